"""The wheel's packages: xrec's own, plus the main job's definition and sample data (pyproject.toml
maps ``xrec.pipelines`` to ``pipelines/`` and ``xrec.data`` to ``data/``)."""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["xrec", "xrec.*"]), "xrec.pipelines", "xrec.data", "xrec.data.bookcrossing",
                "xrec.data.sib200"])
