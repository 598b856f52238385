"""`dm-tune report` and `dm-tune trials`: what a study measured, for people.

`_rows` (one row per trial and confirmation run) and `_data` (the report's sections) compute
plain values with dm-tune's own rules; `_table` and `_html` only draw them; `_files` checks
and writes the output. The drawing imports plotly only when a report is written."""

from tuner.report._data import ReportData, report_data
from tuner.report._files import check_output, write_output, write_report
from tuner.report._rows import TrialRow, as_records, trial_rows
from tuner.report._table import FORMATS, format_rows

__all__ = [
    "FORMATS",
    "ReportData",
    "TrialRow",
    "as_records",
    "check_output",
    "format_rows",
    "report_data",
    "trial_rows",
    "write_output",
    "write_report",
]
