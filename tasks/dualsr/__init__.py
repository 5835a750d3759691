"""dualsr"""
