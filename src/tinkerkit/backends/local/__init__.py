"""The ``local`` backend: real ``transformers`` models with PEFT LoRA, trained by PyTorch.

Needs the ``local`` extra (``pip install 'tinkerkit[local]'``); the registry imports
it on first use, so the other backends never pay for torch.
"""
