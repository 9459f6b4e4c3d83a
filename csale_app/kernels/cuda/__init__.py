"""CUDA engine (numba.cuda): device kernels and batches (:mod:`.backend`), host steps (:mod:`.host`)."""
