"""The report's reference-database fallback reads what the writer stores in the sidecar."""

import json

from csale_app.report import discover
from csale_app.report.sections import database_of


def test_database_from_sidecar_uses_the_written_keys(tmp_path):
    # the C-SALE sidecar's ReferenceDatabase is Database.describe(): n_experiments, n_foci
    statmap = tmp_path / "studyset-a_meta-csale_stat-z_desc-thresholded_statmap.nii.gz"
    statmap.write_bytes(b"")
    described = {
        "source": "--database",
        "files": ["db.tsv"],
        "paths": ["/in/db.tsv"],
        "n_experiments": 107,
        "n_foci": 1234,
    }
    statmap.with_name(statmap.name[: -len(".nii.gz")] + ".json").write_text(
        json.dumps({"ReferenceDatabase": described})
    )
    an = discover.Analysis("csale", "studyset-a", maps={"stat-z_desc-thresholded": statmap})
    db = database_of(None, an)  # results of an earlier run: no summary
    assert db == {"source": "--database", "files": ["db.tsv"], "n_experiments": 107, "n_foci": 1234}
