"""BC datasets: the catalogue (`versions.json`), curated manifests, checksum sheets, and the audit."""
