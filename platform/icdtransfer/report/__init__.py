"""Reports: pandas aggregation, bootstrap uncertainty, tables, Plotly dashboards."""
