"""Run notebooks in a real Jupyter kernel of this interpreter, and read their outputs.

The kernel is an ipykernel started with ``sys.executable`` from a kernelspec written to
a temporary folder, so whatever ``python3`` kernelspecs the machine has, the notebook runs
in the interpreter (and the tinkerkit) under test. It gets the test's environment
(``TINKERKIT_HOME`` in the test's temporary folder, the hub offline), its own IPython and
Jupyter runtime folders, and the notebook's working folder in ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

KERNEL_NAME = "tinkerkit-test"
NOTEBOOKS = Path(__file__).resolve().parents[2] / "examples" / "notebooks"


def _kernel_manager(tmp_path: Path) -> KernelManager:
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "tinkerkit test kernel",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    specs = KernelSpecManager(kernel_dirs=[str(spec_dir.parent)], ensure_native_kernel=False)
    return KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)


def _kernel_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["TINKERKIT_HOME"] = str(tmp_path / "tinkerkit-home")  # never the user's
    env["IPYTHONDIR"] = str(tmp_path / "ipython")
    env["JUPYTER_RUNTIME_DIR"] = str(tmp_path / "jupyter" / "runtime")
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    return env


@contextmanager
def kernel(
    nb: nbformat.NotebookNode, tmp_path: Path, timeout: int = 120
) -> Iterator[NotebookClient]:
    """A started kernel for ``nb``, run in ``tmp_path``: ``client.execute_cell(cell, i)``."""
    client = NotebookClient(
        nb,
        km=_kernel_manager(tmp_path),
        timeout=timeout,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    with client.setup_kernel(env=_kernel_env(tmp_path), cwd=str(tmp_path)):
        yield client


def _execute(name: str, folder: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    with kernel(nb, folder) as client:
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
    return nb


_background: dict[str, tuple[Future[nbformat.NotebookNode], Path]] = {}


def start_in_background(names: Iterable[str], root: Path) -> None:
    """Run the example notebooks one after another on a thread, each in its own kernel
    and folder under ``root``, while the rest of the suite runs: the kernels (the work)
    take the second core, and each test then reads its notebook's outputs."""
    if _background:
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="notebooks")
    for name in names:
        folder = root / name
        folder.mkdir(parents=True)
        _background[name] = (pool.submit(_execute, name, folder), folder)
    pool.shutdown(wait=False)


def run_notebook(name: str, tmp_path: Path) -> tuple[nbformat.NotebookNode, Path]:
    """``examples/notebooks/NAME.ipynb`` executed top to bottom (a failing cell raises),
    and the folder it ran in: started in the background, or here in ``tmp_path``."""
    started = _background.pop(name, None)
    if started is not None:
        future, folder = started
        return future.result(timeout=600), folder
    return _execute(name, tmp_path), tmp_path


def text_of(cell: Any) -> str:
    """What a code cell printed, plus the plain text of what it displayed."""
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            parts.append(output.data.get("text/plain", ""))
        elif output.output_type == "error":
            parts.append(f"{output.ename}: {output.evalue}")
    return "".join(parts)


def html_of(cell: Any) -> str:
    """The HTML a code cell displayed (its result, and ``display`` calls)."""
    return "".join(
        output.data.get("text/html", "")
        for output in cell.get("outputs", [])
        if output.output_type in ("execute_result", "display_data")
    )


def errors_of(cell: Any) -> list[str]:
    return [o.ename for o in cell.get("outputs", []) if o.output_type == "error"]
