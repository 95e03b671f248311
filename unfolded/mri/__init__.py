"""Real MRI data: fastMRI's metrics, fastMRI-layout files (reading, and a generator of small ones), coil
sensitivities estimated from the data (ESPIRiT, low-resolution ACS).

Not imported by `import unfolded` (it needs h5py, and sigpy for ESPIRiT / Poisson-disc): import the
submodules, e.g. `from unfolded.mri.metrics import volume_metrics`.
"""
