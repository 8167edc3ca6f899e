"""Shared logic of the scripts in ``tools/`` (which only parse arguments).

* :mod:`.toy_data` -- the small synthetic COCO / ADE20K / NYU-depth dataset;
* :mod:`.runner` -- train / test any of our configs with mmdet or mmseg, picked from the
  config's ``default_scope``;
* :mod:`.launch` -- the distributed launcher over ``torchrun``;
* :mod:`.quickstart` -- the quickstart job.

Nothing here is imported by ``import pvtfpn_mm``.
"""
