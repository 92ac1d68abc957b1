"""sources/docplanner"""
