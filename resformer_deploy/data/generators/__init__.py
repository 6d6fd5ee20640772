"""Deterministic data-set generators built from scikit-learn's digits (shipped with the package,
nothing downloaded), written in the on-disk layouts ``--data`` reads:

* ``digits_images``: 32x32 RGB images in the CIFAR-10 python layout (the ``cifar`` topology);
* ``digits_events``: N-MNIST-style DVS event streams integrated into spikingjelly frames
  ``[16, 2, 64, 64]`` (the ``dvsg`` topology).

Both keep the held-out split of ``resformer_deploy.data.digits``: a source digit is rendered only
into its own split, so train and test never share a digit.
"""
