"""Recurrent spiking network with binary connections: constants, mask layout and kernels.

``BitsetRSNN`` advances batches of networks with packed ``uint64`` masks and numba
kernels. ``ReferenceRSNN`` computes the same equations with float numpy matrices and
exists to test and benchmark the bitset path against.
"""

from sb3_satr.network.batch import BitsetRSNN, NetworkState
from sb3_satr.network.masks import NetworkLayout, PackedMasks
from sb3_satr.network.reference import ReferenceRSNN
from sb3_satr.network.spec import NetworkSpec

__all__ = ["NetworkSpec", "NetworkLayout", "PackedMasks", "BitsetRSNN", "NetworkState", "ReferenceRSNN"]
