"""Repack the PETRA III P25 near-field ptychography scan for shipping with the package.

Input: ``PETRAIII_P25_Near_Field_Ptycho.cxi`` as distributed in the CDTools repository
(``examples/example_data/``; the data are CC BY 4.0, Zenodo doi:10.5281/zenodo.17899482).
Output: the same CXI paths and values with the patterns stored as uint16 (the counts are
whole numbers from 0 to 29,176), gzip level 9 with the shuffle filter, the mask as uint8,
and the geometry the file does not hold (the focus-to-sample distance of the divergent
beam, 3.65 mm, from the dataset's description) as attributes of ``entry_1``.

    python benchmarks/repack_p25.py PETRAIII_P25_Near_Field_Ptycho.cxi \
        src/ptychobench/beamline_data/p25_near_field.cxi
"""

from __future__ import annotations

import sys

import h5py
import numpy as np

KEEP = (
    "entry_1/instrument_1/detector_1/distance",
    "entry_1/instrument_1/detector_1/x_pixel_size",
    "entry_1/instrument_1/detector_1/y_pixel_size",
    "entry_1/instrument_1/detector_1/basis_vectors",
    "entry_1/instrument_1/source_1/energy",
    "entry_1/instrument_1/source_1/wavelength",
    "entry_1/sample_1/geometry_1/translation",
)


def main(src: str, dst: str) -> None:
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        data = f["entry_1/instrument_1/detector_1/data"][()]
        assert data.min() >= 0 and data.max() < 2**16 and np.array_equal(data, np.round(data))
        g.create_dataset(
            "entry_1/instrument_1/detector_1/data",
            data=data.astype(np.uint16),
            compression="gzip",
            compression_opts=9,
            shuffle=True,
            chunks=(20, *data.shape[1:]),
        )
        g.create_dataset(
            "entry_1/instrument_1/detector_1/mask", data=f["entry_1/instrument_1/detector_1/mask"][()].astype(np.uint8)
        )
        for key in KEEP:
            g.create_dataset(key, data=f[key][()])
        g["cxi_version"] = f["cxi_version"][()]
        e = g["entry_1"]
        e.attrs["near_field"] = True
        e.attrs["focus_to_sample_m"] = 3.65e-3
        e.attrs["source"] = "PETRA III P25 near-field ptychography, doi:10.5281/zenodo.17899482 (CC BY 4.0)"


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
