"""HCP and HCO master data, identity resolution, the HCP 360 profile."""
