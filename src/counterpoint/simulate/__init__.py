"""Synthetic data generators. Everything they produce is invented and marked ``synthetic``.

``counterpoint.simulate.market`` writes a whole synthetic pharma market (HCPs, HCOs, reps,
consents, a content catalogue and a multi-channel interaction history) as Parquet files.
"""
