"""Prints the stack's versions, whether mmcv's ops are compiled, and our registered types."""
import argparse

from pvtfpn_mm.env_info import mmcv_ops_compiled, registered_types, stack_versions


def parse_args():
    return argparse.ArgumentParser(description=__doc__).parse_args()


def main():
    parse_args()
    for name, version in stack_versions().items():
        print(f'{name:15s} {version}')
    print(f'mmcv ops        {"compiled" if mmcv_ops_compiled() else "MISSING"}')
    for scope, names in registered_types().items():
        print(f'registered in {scope}: {", ".join(names) or "(none)"}')


if __name__ == '__main__':
    main()
