"""Prints the stack's versions, torch's CUDA, whether mmcv's ops are compiled (CPU only or
with CUDA ops), and our registered types."""

import argparse

from pvtfpn_tools.env_info import (
    mmcv_cuda_ops,
    mmcv_ops_compiled,
    registered_types,
    stack_versions,
    torch_cuda,
)


def parse_args():
    return argparse.ArgumentParser(description=__doc__).parse_args()


def main():
    parse_args()
    for name, version in stack_versions().items():
        print(f'{name:15s} {version}')
    print(
        f'mmcv ops        {"compiled" if mmcv_ops_compiled() else "MISSING"}'
    )
    cuda_ops = mmcv_cuda_ops()
    print(
        'mmcv CUDA ops   '
        + (
            f'compiled with CUDA {cuda_ops}'
            if cuda_ops[0].isdigit()
            else f'none ({cuda_ops}: CPU ops only)'
        )
    )
    for key, value in torch_cuda().items():
        print(f'{"torch CUDA " + key:15s} {value}')
    for scope, names in registered_types().items():
        print(f'registered in {scope}: {", ".join(names) or "(none)"}')


if __name__ == '__main__':
    main()
