"""What ``actstore report`` does (declared in :mod:`queries.report_verbs`).

Examples
--------
>>> store.close()  # the verb opens the store itself
>>> report(ReportParams(store_path, tmp / "report.html", verify=False))
PosixPath('.../report.html')
>>> (tmp / "report.html").read_text()[:15]
'<!DOCTYPE html>'
"""

from __future__ import annotations

import logging
import sys
import webbrowser
from pathlib import Path

import actstore
from queries.report_results import Budget
from queries.report_verbs import ReportParams

log = logging.getLogger("actstore")


def report(params: ReportParams) -> Path:
    """Write the report page of ``params.store`` to ``params.output`` and say where."""
    from queries.report import check_report_path, report_html, write_report

    output = check_report_path(params.output)
    neurons = params.neuron_pairs()
    if params.top_rows < 1:
        from actstore.errors import ParameterError

        raise ParameterError("top_rows", f"must be at least 1, got {params.top_rows}")
    with actstore.open(params.store) as store:
        page = report_html(
            store, verify=params.verify, neurons=neurons, sentences=params.sentences,
            budget=Budget(top_rows=params.top_rows),
        )  # fmt: skip
    write_report(page, output)
    sys.stderr.write(f"wrote report {output} ({len(page.encode()) / 2**20:.1f} MiB)\n")
    if params.open:
        webbrowser.open(output.resolve().as_uri())
    return output
