"""Reporting: what the results store holds, as paper-style tables (``tables``: mean +- std
over seeds, best in bold, published reference rows, paired differences) and plots
(``plots``: label-efficiency curves and ablation charts, drawn from the same cells).

Nothing is imported here: import the module you need (``from benchmark.report.tables
import build_tables``).
"""
