"""CPU feature flags, from the text of /proc/cpuinfo (hand-written fixtures: two machines this project met)."""

from singleshot.cpu import cpu_features, features_from, parse_cpuinfo

# A 2-core VM whose flags include AMX and AVX512-BF16 (torch.backends.cpu.get_cpu_capability() says "AVX512").
XEON = """processor\t: 0
model name\t: Intel(R) Xeon(R) Processor
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
processor\t: 1
model name\t: Intel(R) Xeon(R) Processor
physical id\t: 0
core id\t\t: 1
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""
# An AMD EPYC VM: AVX2 only, two hyperthreads of one core.
EPYC = """processor\t: 0
model name\t: AMD EPYC 7B13
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse2 avx avx2 fma
processor\t: 1
model name\t: AMD EPYC 7B13
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse2 avx avx2 fma
"""


def test_xeon_with_amx_has_fast_bf16_and_int8() -> None:
    name, flags, physical = parse_cpuinfo(XEON)
    assert (name, physical) == ("Intel(R) Xeon(R) Processor", 2)
    cpu = features_from(name, flags, physical, logical=2)
    assert cpu.avx2 and cpu.avx512 and cpu.vnni and cpu.bf16 and cpu.amx
    assert cpu.fast_bf16 and cpu.fast_int8
    assert cpu.describe().endswith("2 physical cores: AVX2 yes, AVX512 yes, VNNI yes, BF16 yes, AMX yes")


def test_avx2_only_cpu_has_neither_and_counts_physical_cores() -> None:
    name, flags, physical = parse_cpuinfo(EPYC)
    cpu = features_from(name, flags, physical, logical=2)
    assert physical == 1 and cpu.physical_cores == 1 and cpu.logical_cores == 2
    assert cpu.avx2 and not (cpu.avx512 or cpu.vnni or cpu.bf16 or cpu.amx)
    assert not cpu.fast_bf16 and not cpu.fast_int8
    assert "BF16 no, AMX no" in cpu.describe()


def test_allowed_cores_cap_the_physical_count() -> None:
    name, flags, physical = parse_cpuinfo(XEON)
    assert features_from(name, flags, physical, logical=1).physical_cores == 1  # e.g. taskset -c 0


def test_this_machine_reports_at_least_one_core() -> None:
    cpu = cpu_features()
    assert 1 <= cpu.physical_cores <= cpu.logical_cores
    assert cpu.describe().count(" yes") + cpu.describe().count(" no") == 5
