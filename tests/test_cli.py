"""The command lines' shared argument types."""

import argparse

import pytest

from flaxmnist import cli


@pytest.mark.parametrize(
    ("text", "size"),
    [("12G", 12 * 2**30), ("12GiB", 12 * 2**30), ("500m", 500 * 2**20), ("1e9", 10**9),
     ("4096", 4096), ("1.5K", 1536)],
)  # fmt: skip
def test_parse_bytes(text, size):
    assert cli.parse_bytes(text) == size


@pytest.mark.parametrize("text", ["", "G", "twelve", "-1G", "0", "inf", "1e400", "nan"])
def test_parse_bytes_refuses_what_is_not_a_size(text):
    with pytest.raises(ValueError, match="size"):
        cli.parse_bytes(text)


def test_size_and_flops_arguments_refuse_nonsense_with_one_message():
    assert cli.size("1G") == 2**30
    assert cli.flops("22T") == 22e12
    for parse, text in [(cli.size, "lots"), (cli.flops, "-1"), (cli.flops, "fast")]:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)
