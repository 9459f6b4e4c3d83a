"""A synthetic Neurosynth v7 file set of Neurosynth's size and format, and its timings.

    python benchmarks/synthetic_neurosynth.py OUT_DIR [--studies 14400] [--seed 2026]
    python benchmarks/synthetic_neurosynth.py OUT_DIR --measure     # writes it if needed

Writes ``data-neurosynth_version-7_coordinates.tsv.gz`` (id, table_id, table_num, peak_id,
x, y, z; about 508,000 peaks), ``..._metadata.tsv.gz`` (id, doi, space, title, authors,
year, journal; 60% MNI, 25% TAL, 15% UNKNOWN, as Neurosynth mixes them),
``..._vocab-terms_source-abstract_type-tfidf_features.npz`` (14,400 x 3,200 sparse tf-idf,
about 100 terms per study, term popularity Zipf-like) and ``..._vocab-terms_vocabulary.txt``
(3,200 terms, "working memory" among them). Coordinates are integer millimetres inside the
2 mm MNI152 brain mask (half uniform, half around 60 "hot spots"); Talairach studies are
written in Talairach (MNI -> TAL, so they land back in the brain). Same seed, same bytes.

``--measure`` times, in a fresh process (imports excluded): reading the file set into the
database's experiments (``csale_app.io.database.load_database`` with
``--default-sample-size 20``, what ``Pipeline.load_database`` runs), the content digest of
the folder (the reuse rule), reading the features once, and one term selection (the column
slice plus the studyset's experiments taken from the database), with the peak RSS;
``--nimare`` adds NiMARE 0.22's ``convert_neurosynth_to_dataset`` (with the features) and
``get_studies_by_label`` on the same files, in another fresh process.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PREFIX = "data-neurosynth_version-7_"
WORDS = (
    "working memory pain emotion fear reward face language motor visual auditory "
    "attention memory encoding retrieval semantic reading speech action inhibition "
    "conflict decision value risk social theory mind self default mode network "
    "cerebellum timing sequence learning error feedback anxiety depression stress "
    "arousal taste smell touch vision color motion object scene navigation spatial "
    "number calculation music rhythm imagery mental rotation grasping saccade eye "
    "movement response selection switching task control monitoring prediction "
    "expectation placebo empathy moral judgment"
).split()


def vocabulary(n_terms: int) -> list[str]:
    """``n_terms`` distinct terms: single words, then two-word phrases; sorted."""
    terms = list(dict.fromkeys(WORDS))
    terms.append("working memory")
    k = 0
    while len(terms) < n_terms:
        a, b = WORDS[k % len(WORDS)], WORDS[(k * 7 + 3) % len(WORDS)]
        phrase = f"{a} {b}"
        if a != b and phrase not in terms:
            terms.append(phrase)
        k += 1
        if k > 50 * n_terms:  # not enough phrases: numbered terms fill the rest
            terms += [f"term{i:05d}" for i in range(n_terms - len(terms))]
    return sorted(terms[:n_terms])


def _gz_tsv(frame: pd.DataFrame, path: Path) -> None:
    buf = io.StringIO()
    frame.to_csv(buf, sep="\t", index=False)
    path.write_bytes(gzip.compress(buf.getvalue().encode(), compresslevel=6, mtime=0))


def write_fileset(
    out: Path,
    n_studies: int = 14_400,
    n_peaks: int = 508_000,
    n_terms: int = 3_200,
    seed: int = 2026,
) -> Path:
    from scipy import sparse

    from csale_app.io.experiments import _ICBM_OTHER
    from csale_app.io.templates import load_brain_mask

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    img = load_brain_mask()
    vox = np.argwhere(np.asanyarray(img.dataobj) > 0)
    xyz_brain = vox @ img.affine[:3, :3].T + img.affine[:3, 3]
    ids = np.sort(rng.choice(np.arange(10_000_000, 30_000_000), n_studies, replace=False))
    mean = n_peaks / n_studies
    per = np.maximum(1, rng.negative_binomial(3, 3 / (3 + mean), n_studies))
    per = np.maximum(1, np.round(per * n_peaks / per.sum()).astype(np.int64))
    total = int(per.sum())
    hot = xyz_brain[rng.integers(0, len(xyz_brain), 60)]
    uniform = xyz_brain[rng.integers(0, len(xyz_brain), total)]
    spots = hot[rng.integers(0, len(hot), total)] + rng.normal(0, 8, (total, 3))
    xyz = np.where((rng.random(total) < 0.5)[:, None], spots, uniform)
    # Gaussian spots may stray outside the brain: those peaks are drawn uniformly instead
    ijk = np.round((xyz - img.affine[:3, 3]) / np.diag(img.affine)[:3]).astype(np.int64)
    inside = np.all((ijk >= 0) & (ijk < np.array(img.shape)), axis=1)
    inside[inside] = np.asanyarray(img.dataobj)[tuple(ijk[inside].T)] > 0
    xyz[~inside] = uniform[~inside]
    xyz = np.round(xyz)
    space = rng.choice(np.array(["MNI", "TAL", "UNKNOWN"]), n_studies, p=[0.6, 0.25, 0.15])
    study = np.repeat(np.arange(n_studies), per)
    tal = space[study] == "TAL"
    homo = np.c_[xyz[tal], np.ones(int(tal.sum()))]
    xyz[tal] = np.round((homo @ _ICBM_OTHER.T)[:, :3], 1)  # MNI -> Talairach
    n_tables = rng.integers(1, 5, n_studies)
    table_num = (np.arange(total) - np.repeat(np.cumsum(per) - per, per)) % np.repeat(
        n_tables, per
    ) + 1
    coords = pd.DataFrame(
        {
            "id": ids[study],
            "table_id": ids[study] // 100 + table_num,
            "table_num": table_num.astype(float),
            "peak_id": np.arange(total) + 1,
            "x": xyz[:, 0],
            "y": xyz[:, 1],
            "z": xyz[:, 2],
        }
    )
    _gz_tsv(coords, out / (PREFIX + "coordinates.tsv.gz"))
    meta = pd.DataFrame(
        {
            "id": ids,
            "doi": [f"10.0000/syn.{i}" for i in ids],
            "space": space,
            "title": [f"Synthetic study {i}" for i in ids],
            "authors": "Doe J, Roe R",
            "year": rng.integers(1997, 2019, n_studies),
            "journal": "Synthetic NeuroImage",
        }
    )
    _gz_tsv(meta, out / (PREFIX + "metadata.tsv.gz"))
    terms = vocabulary(n_terms)
    popularity = 1.0 / np.arange(1, n_terms + 1) ** 0.8
    popularity = rng.permutation(popularity / popularity.sum())
    k = np.minimum(rng.poisson(100, n_studies), n_terms)
    rows = np.repeat(np.arange(n_studies), k)
    cols = np.concatenate([rng.choice(n_terms, m, replace=False, p=popularity) for m in k])
    vals = np.round(rng.gamma(2.0, 0.03, len(rows)), 6) + 1e-4
    features = sparse.csr_matrix((vals, (rows, cols)), shape=(n_studies, n_terms))
    sparse.save_npz(
        out / (PREFIX + "vocab-terms_source-abstract_type-tfidf_features.npz"), features
    )
    (out / (PREFIX + "vocab-terms_vocabulary.txt")).write_text("\n".join(terms) + "\n")
    return out


MEASURE = r"""
import json, resource, sys, time
import numpy as np
from csale_app.io.database import load_database
from csale_app.io.digest import file_digest
from csale_app.io.neurosynth import find_fileset
from csale_app.io.terms import load_features
from csale_app.io.templates import load_brain_mask
folder = sys.argv[1]
img = load_brain_mask(); shape = img.shape
t, c = time.perf_counter(), time.process_time()
db = load_database([folder], img.affine, shape, default_sample_size=20)
t_read, c_read = time.perf_counter() - t, time.process_time() - c
t = time.perf_counter(); file_digest(folder); t_digest = time.perf_counter() - t
t = time.perf_counter(); tf = load_features(find_fileset(folder), None)
t_features = time.perf_counter() - t
sel, sub = [], []
for _ in range(21):
    t = time.perf_counter(); ids, w = tf.select("working memory", 0.001)
    sel.append(time.perf_counter() - t)
    t = time.perf_counter(); exps = db.subset(np.isin(np.asarray(db.study_ids, object), ids))
    sub.append(time.perf_counter() - t)
print(json.dumps({"studies": db.n_experiments, "peaks": db.n_foci, "terms": len(tf.vocabulary),
    "nnz": int(tf.matrix.nnz), "read_s": round(t_read, 3), "read_cpu_s": round(c_read, 3), "digest_s": round(t_digest, 3),
    "features_s": round(t_features, 3), "select_s": round(float(np.median(sel)), 5),
    "studyset_experiments_s": round(float(np.median(sub)), 4),
    "selected_studies": int(len(ids)), "studyset_experiments": exps.n_experiments,
    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""


NIMARE = r"""
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
from nimare.io import convert_neurosynth_to_dataset
p = sys.argv[1] + "/data-neurosynth_version-7_"
t, c = time.perf_counter(), time.process_time()
dset = convert_neurosynth_to_dataset(p + "coordinates.tsv.gz", p + "metadata.tsv.gz",
    annotations_files={"features": p + "vocab-terms_source-abstract_type-tfidf_features.npz",
                       "vocabulary": p + "vocab-terms_vocabulary.txt"})
t_read, c_read = time.perf_counter() - t, time.process_time() - c
t = time.perf_counter()
ids = dset.get_studies_by_label("terms_abstract_tfidf__working memory", 0.001)
t_sel = time.perf_counter() - t
print(json.dumps({"nimare_read_s": round(t_read, 2), "nimare_read_cpu_s": round(c_read, 2),
    "nimare_select_s": round(t_sel, 4),
    "nimare_selected": len(ids),
    "nimare_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""


def measure(folder: Path, nimare: bool = False) -> dict:
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}
    result = {}
    for script in (MEASURE, NIMARE) if nimare else (MEASURE,):
        out = subprocess.run(
            [sys.executable, "-c", script, str(folder)],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
        result.update(json.loads(out.stdout.strip().splitlines()[-1]))
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--studies", type=int, default=14_400)
    ap.add_argument("--peaks", type=int, default=508_000)
    ap.add_argument("--terms", type=int, default=3_200)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--measure", action="store_true")
    ap.add_argument(
        "--nimare",
        action="store_true",
        help="with --measure: also NiMARE's convert_neurosynth_to_dataset and "
        "get_studies_by_label on the same files",
    )
    args = ap.parse_args(argv)
    if not (args.out / (PREFIX + "coordinates.tsv.gz")).is_file() or not args.measure:
        write_fileset(args.out, args.studies, args.peaks, args.terms, args.seed)
    if args.measure:
        print(json.dumps(measure(args.out, args.nimare), indent=1))
    else:
        print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
