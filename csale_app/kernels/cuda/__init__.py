"""CUDA engine (numba.cuda): device kernels (:mod:`.kernels`), the backend and its batch loop
(:mod:`.backend`), host steps (:mod:`.host`)."""
