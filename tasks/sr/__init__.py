"""Super-resolution task: PathImgSR (MASRNet/MASRGAN), CRCHistoPhenotypes (rVTT), Kather (SNADN data)."""
