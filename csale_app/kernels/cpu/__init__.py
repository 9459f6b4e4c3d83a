"""CPU engine (numba): the ALE pass (:mod:`.ale`) and the C-SALE pass (:mod:`.csale`)."""
