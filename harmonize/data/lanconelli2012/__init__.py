"""Lu-177 voxel S-values of Lanconelli et al. 2012 (see README.md in this folder)."""
