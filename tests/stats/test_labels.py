"""Atlas labels, cluster composition and peak tables on a synthetic map with known clusters."""

import numpy as np
import pytest
from scipy import ndimage

from csale_app.kernels.plan import build_grid
from csale_app.io import atlases as A
from csale_app.stats import labels as L
from csale_app.stats.tables import cluster_table


@pytest.fixture(scope="module")
def template():
    from csale_app.io.templates import load_brain_mask

    img = load_brain_mask("brain")
    mask = np.asanyarray(img.dataobj) > 0
    return img.affine, mask, build_grid(mask)


def _ijk(affine, xyz):
    inv = np.linalg.inv(affine)
    return tuple(np.round(inv[:3, :3] @ np.asarray(xyz, float) + inv[:3, 3]).astype(int))


def _cube(vol, centre, half, peak):
    i, j, k = centre
    sl = (
        slice(i - half, i + half + 1),
        slice(j - half, j + half + 1),
        slice(k - half, k + half + 1),
    )
    g = np.indices((2 * half + 1,) * 3) - half
    vol[sl] = np.maximum(vol[sl], peak - np.sqrt((g**2).sum(axis=0)))


@pytest.fixture(scope="module")
def synthetic(template):
    affine, mask, grid = template
    vol = np.zeros(mask.shape)
    cereb = _ijk(affine, (-30, -60, -30))
    thal = _ijk(affine, (-10, -18, 8))
    _cube(vol, cereb, 1, 5.0)  # 27 voxels, peak 5 at the centre
    _cube(vol, thal, 1, 4.0)  # 27 voxels, peak 4
    # A bar along y in the right frontal lobe with two bumps 20 mm apart and a shoulder 4 mm
    # from the first: peaks 3 and 2.5 are reported, the shoulder (2.9) is not (< 8 mm).
    bar = _ijk(affine, (40, 20, 30))
    vol[bar[0], bar[1] : bar[1] + 12, bar[2]] = 1.0 + 0.1 * np.arange(12)  # no plateau
    vol[bar[0], bar[1] + 1, bar[2]] = 3.0
    vol[bar[0], bar[1] + 3, bar[2]] = 2.9
    vol[bar[0], bar[1] + 2, bar[2]] = 1.5
    vol[bar[0], bar[1] + 11, bar[2]] = 2.5
    vol[~mask] = 0
    lab_vol, n = ndimage.label(vol > 0)
    assert n == 3
    stat = vol[mask]
    labels = lab_vol[mask]
    return stat, labels, {"cereb": cereb, "thal": thal, "bar": bar}


def test_point_labels():
    lab = L.label_at((-30, -60, -30))
    assert lab["suit_cerebellar"] == "Left Cerebellum VI"
    assert lab["ho_cortical"] == L.UNLABELLED
    lab = L.label_at((-10, -18, 8))
    assert lab["aal3_subcortical"].startswith("Left Thalamus")
    assert L.label_at((20, 10, 0))["aal3_subcortical"] == "Right Putamen"
    assert L.label_at((-40, -20, 55))["ho_cortical"] == "Left Precentral Gyrus"
    assert L.label_at((40, -20, 55))["ho_cortical"] == "Right Precentral Gyrus"
    assert L.label_at((0, 0, 500)) == {k: L.UNLABELLED for k in L.ATLASES}
    both = L.label_at(np.array([[-30, -60, -30], [20, 10, 0]]))
    assert isinstance(both, list) and len(both) == 2


def test_ho_atlas_not_mirrored():
    # The shipped HO file has an x-flipped affine; after resampling, a left-hemisphere
    # voxel of the template must read the left-hemisphere voxel of the file.
    import nibabel as nib

    ho = A.load_atlas("ho_cortical")
    raw = nib.load(str(A.atlas_files()["ho_cortical"]))
    data = np.asanyarray(raw.dataobj)
    inv = np.linalg.inv(raw.affine)
    from csale_app.io.templates import load_brain_mask

    aff = load_brain_mask().affine
    rng = np.random.default_rng(0)
    ijk = np.argwhere(ho.data > 0)[rng.choice((ho.data > 0).sum(), 200, replace=False)]
    xyz = ijk @ aff[:3, :3].T + aff[:3, 3]
    src = np.round(xyz @ inv[:3, :3].T + inv[:3, 3]).astype(int)
    assert np.array_equal(data[tuple(src.T)], ho.data[tuple(ijk.T)])


def test_suit_labels_are_integers_1_to_28():
    suit = A.load_atlas("suit_cerebellar")
    vals = np.unique(suit.data)
    assert vals[0] == 0 and set(vals[1:]) <= set(range(1, 29)) and len(vals) > 20


def test_cluster_table_labels_and_composition(template, synthetic):
    affine, mask, grid = template
    stat, labels, where = synthetic
    df = cluster_table(labels, stat, grid, affine)
    df = L.add_labels(df, labels, grid, affine)
    assert df["size_voxels"].tolist() == [27, 27, 12]
    assert df["size_mm3"].tolist() == pytest.approx([216.0, 216.0, 96.0])
    cereb = df[df["peak_value"] == 5.0].iloc[0]
    assert (cereb.peak_x, cereb.peak_y, cereb.peak_z) == (-30, -60, -30)
    assert (cereb.centre_x, cereb.centre_y, cereb.centre_z) == pytest.approx((-30, -60, -30))
    assert cereb.peak_label_suit_cerebellar == "Left Cerebellum VI"
    assert cereb.composition.split("; ")[0].endswith("Left Cerebellum VI")
    thal = df[df["peak_value"] == 4.0].iloc[0]
    assert (thal.peak_x, thal.peak_y, thal.peak_z) == (-10, -18, 8)
    assert thal.peak_label_aal3_subcortical.startswith("Left Thalamus")
    assert "Thalamus" in thal.composition
    comp = L.composition_counts(grid.to_volume(labels == cereb.label, fill=False))
    assert comp["n_voxels"].sum() == 27
    assert comp["percent"].sum() == pytest.approx(100)
    pcts = [float(p.split("%")[0]) for p in cereb.composition.split("; ")]
    assert sum(pcts) == pytest.approx(100, abs=len(pcts))


def test_peaks_table_subpeaks_8mm_apart(template, synthetic):
    affine, mask, grid = template
    stat, labels, where = synthetic
    peaks = L.peaks_table(stat, labels, grid, affine)
    assert set(peaks.columns) >= {
        "cluster_id",
        "peak_id",
        "x",
        "y",
        "z",
        "value",
        "label_suit_cerebellar",
        "label_aal3_subcortical",
        "label_ho_cortical",
    }
    b = where["bar"]
    bar_id = grid.to_volume(labels)[b[0], b[1] + 1, b[2]]
    assert bar_id > 0
    bar = peaks[peaks["cluster_id"] == bar_id]
    assert bar["value"].tolist() == [3.0, 2.5]
    assert bar["peak_id"].tolist() == [f"{bar_id}", f"{bar_id}a"]
    assert bar["y"].tolist() == [22.0, 42.0]
    assert bar["x"].tolist() == [40.0, 40.0]
    # One peak for each cube (a single local maximum), labelled.
    cube = peaks[peaks["value"] == 5.0]
    assert len(peaks[peaks["cluster_id"] == cube["cluster_id"].iloc[0]]) == 1
    assert cube["label_suit_cerebellar"].iloc[0] == "Left Cerebellum VI"
    assert len(peaks) == 4


def test_max_subpeaks_and_distance():
    ijk = np.array([[i, 0, 0] for i in range(0, 40, 5)])
    xyz = ijk * 2.0
    values = np.arange(len(ijk), 0, -1).astype(float)
    # Isolated points: each is a local maximum; 10 mm apart, so all pass the 8 mm rule.
    kept = L.cluster_peaks(values, xyz, ijk, 8.0, max_subpeaks=3)
    assert kept.tolist() == [0, 1, 2, 3]
    kept = L.cluster_peaks(values, xyz, ijk, 15.0, max_subpeaks=10)
    assert kept.tolist() == [0, 2, 4, 6]


def test_atlas_credits():
    credits = A.atlas_credits()
    assert {c["key"] for c in credits} == set(L.ATLASES)
    text = " ".join(c["license"] for c in credits)
    assert "non-commercial" in text and "CC BY-ND 4.0" in text
