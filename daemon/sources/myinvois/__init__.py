"""sources/myinvois"""
