"""core/model"""
