"""The wheel a user installs ships the web dashboard (#16): `maturin build` (as `make` builds the extension, so the
compiled crates are reused and the build takes seconds) makes a wheel whose file list holds every file of
`python/townlet/ui/web/` (the page a served shard answers at `/`), next to the extension and the type marker."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import REPO_ROOT

WEB = REPO_ROOT / "python/townlet/ui/web"


def test_the_wheel_ships_the_dashboard_files(tmp_path: Path) -> None:
    venv = Path(sys.executable).parent.parent
    env = {**os.environ, "VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}"}
    for _ in range(3):  # a developer's concurrent `maturin develop` may move target/maturin/lib_core.so under us
        proc = subprocess.run(
            ["maturin", "build", "--release", "--quiet", "--out", str(tmp_path)],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        if proc.returncode == 0 or "lib_core.so" not in proc.stderr:
            break
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("townlet-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    web = sorted(p.name for p in WEB.iterdir() if p.is_file())
    assert {"index.html", "dashboard.js", "dashboard.css"} <= set(web)
    missing = [f"townlet/ui/web/{name}" for name in web if f"townlet/ui/web/{name}" not in names]
    assert not missing, f"{wheel.name} lacks {missing}"
    with zipfile.ZipFile(wheel) as z:
        for name in web:
            assert z.read(f"townlet/ui/web/{name}") == (WEB / name).read_bytes()
    assert "townlet/py.typed" in names and any(n.startswith("townlet/_core") and n.endswith(".so") for n in names)
