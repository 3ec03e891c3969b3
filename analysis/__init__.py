"""Measurements and their presentation: tidy DataFrames (analysis.curves) and plotly figures
(analysis.plots). Imports dde, never app."""
