"""Sphinx extension of the course site: MathJax and the ipywidgets HTML manager served from the
site itself, so that a page needs no third-party host at view time.

The three JavaScript packages come from the npm registry at build time (``npm pack`` of pinned
versions, unpacked once into ``datasets/cache/vendor``) and are copied into ``_static/vendor``.
``jupyter_book_config.yml`` points Sphinx's ``mathjax_path`` and myst-nb's ``nb_ipywidgets_js`` at
those copies. MathJax keeps only what a page can load: the TeX+MathML→CHTML component, the TeX
extensions it autoloads, the CHTML fonts and the menu.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from course_lib.config import cache_dir

PACKAGES = {  # npm package -> files to keep (relative to the package folder) -> name in vendor/
    "mathjax@3.2.2": {
        "es5/tex-mml-chtml.js": "mathjax/tex-mml-chtml.js",
        "es5/input/tex/extensions": "mathjax/input/tex/extensions",
        "es5/output/chtml/fonts": "mathjax/output/chtml/fonts",
        "es5/ui": "mathjax/ui",
        "es5/a11y": "mathjax/a11y",
        "LICENSE": "mathjax/LICENSE",
    },
    "requirejs@2.3.8": {"require.js": "require.js"},  # its licence header is in the file
    "@jupyter-widgets/html-manager@1.0.15": {  # embed-amd.js and the icon fonts it loads
        "dist": "html-manager",
    },
}
UNUSED = shutil.ignore_patterns("embed.js", "libembed-amd.js", "*.map", "*.d.ts")
# loaded between require.js and embed-amd.js: where the widget manager's modules and icon fonts
# are, i.e. _static/vendor/html-manager seen from the current page (pages sit at several depths)
REQUIRE_CONFIG = """\
var vendor = new URL((document.documentElement.dataset.content_root || "") +
  "_static/vendor/html-manager/", document.baseURI).href;
window.__jupyter_widgets_assets_path__ = vendor;
require.config({paths: {"@jupyter-widgets/html-manager/dist": vendor.slice(0, -1)}});
"""


def vendor_dir() -> Path:
    """The unpacked packages, fetched with ``npm pack`` the first time they are needed."""
    target = cache_dir() / "vendor"
    stamp = target / (".done-" + "-".join(sorted(PACKAGES)).replace("/", "_").replace("@", ""))
    if stamp.exists():
        return target
    if shutil.which("npm") is None:
        raise RuntimeError(
            "the site vendors MathJax and the widget manager with npm: install Node.js"
        )
    shutil.rmtree(target, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        names = subprocess.run(
            ["npm", "pack", "--silent", *PACKAGES],
            cwd=tmp,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        for spec, tarball in zip(PACKAGES, names, strict=True):
            with tarfile.open(Path(tmp) / tarball) as tar:
                tar.extractall(Path(tmp) / spec.replace("/", "_"), filter="data")
            package = Path(tmp) / spec.replace("/", "_") / "package"
            for source, name in PACKAGES[spec].items():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                if (package / source).is_dir():
                    shutil.copytree(package / source, target / name, ignore=UNUSED)
                else:
                    shutil.copyfile(package / source, target / name)
    (target / "require-config.js").write_text(REQUIRE_CONFIG)
    stamp.touch()
    return target


def _copy_vendor(app, exception):
    if exception is None and app.builder.format == "html":
        shutil.copytree(vendor_dir(), Path(app.outdir) / "_static" / "vendor", dirs_exist_ok=True)


def setup(app):
    vendor_dir()  # fail early (before reading any page) if the packages cannot be had
    app.connect("build-finished", _copy_vendor)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
