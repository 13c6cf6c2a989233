"""MkDocs hook: serve the committed benchmark results and the notebooks from where they live.

``benchmarks/results/`` and ``notebooks/`` stay outside ``docs/`` (scripts and the test
suite write and read them there); this adds their pages and images to the site under
the same paths, so the docs link to them as ``benchmarks/results/...`` and
``notebooks/...`` and a missing result fails the strict build instead of going stale
in a copy.
"""

import pathlib

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCES = {"benchmarks/results": ("*.md", "*.png"), "notebooks": ("*.ipynb", "*.png")}


@event_priority(100)  # before mkdocs-jupyter turns the .ipynb files into pages
def on_files(files, config):
    for folder, patterns in SOURCES.items():
        for pattern in patterns:
            for path in sorted((ROOT / folder).rglob(pattern)):
                uri = path.relative_to(ROOT).as_posix()
                if ".ipynb_checkpoints" not in uri and files.get_file_from_path(uri) is None:
                    files.append(
                        File(
                            uri,
                            src_dir=str(ROOT),
                            dest_dir=config.site_dir,
                            use_directory_urls=config.use_directory_urls,
                        )
                    )
    return files
