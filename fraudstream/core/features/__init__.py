"""core/features"""
