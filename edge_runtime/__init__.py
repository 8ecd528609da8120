"""ecgedge.edge_runtime"""
