"""The CPU-dependent choices are rules tested on given ``/proc/cpuinfo`` texts, so they are checked on
any machine: an Intel Xeon with AMX (where llama.cpp's AMX buffers crash), an AMD EPYC with AVX-512
VNNI and no AMX, an older AVX2-only Intel, an ARM server, and no cpuinfo at all."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from kb.cli import main
from models.cpu import CpuInfo, choose_extra_buffers, physical_cores

# The first processor block of real machines' /proc/cpuinfo (flags lines shortened only at the end).
XEON_AMX = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ss ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm abm 3dnowprefetch avx2 smep bmi2 erms invpcid avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves avx_vnni avx512_bf16 wbnoinvd arat avx512vbmi umip pku ospke waitpkg avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq la57 rdpid bus_lock_detect cldemote movdiri movdir64b fsrm md_clear serialize tsxldtrk amx_bf16 avx512_fp16 amx_tile amx_int8 flush_l1d arch_capabilities

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse sse2 avx avx2 avx512f amx_tile amx_int8 amx_bf16
"""

EPYC_ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9654 96-Core Processor
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm rep_good nopl cpuid extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm cmp_legacy cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw topoext perfctr_core ssbd ibrs ibpb stibp vmmcall fsgsbase bmi1 avx2 smep bmi2 erms invpcid avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves avx512_bf16 clzero xsaveerptr wbnoinvd arat npt nrip_save avx512vbmi umip pku ospke avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq rdpid fsrm
"""

HASWELL = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov sse sse2 ss ht syscall nx lm constant_tsc pni pclmulqdq ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand avx2 bmi1 bmi2 erms
"""

ARM = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
"""


@pytest.mark.parametrize(
    ("text", "model", "features", "amx"),
    [
        (XEON_AMX, "Intel(R) Xeon(R) Platinum 8480+", ["AVX2", "AVX-512", "VNNI", "AMX"], True),
        (EPYC_ZEN4, "AMD EPYC 9654 96-Core Processor", ["AVX2", "AVX-512", "VNNI"], False),
        (HASWELL, "Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz", ["AVX2"], False),
        (ARM, "unknown", [], False),
        ("", "unknown", [], False),
    ],
    ids=["xeon-amx", "epyc-zen4", "haswell", "arm", "empty"],
)
def test_features_are_read_from_a_cpuinfo_text(text: str, model: str, features: list[str], amx: bool) -> None:
    cpu = CpuInfo.parse(text)
    assert cpu.model_name == model
    assert cpu.features() == features
    assert cpu.amx is amx


@pytest.mark.parametrize(
    ("text", "enabled"),
    [(XEON_AMX, False), (EPYC_ZEN4, True), (HASWELL, True), (ARM, True), ("", True)],
    ids=["xeon-amx", "epyc-zen4", "haswell", "arm", "empty"],
)
def test_auto_turns_extra_buffers_off_exactly_on_amx(text: str, enabled: bool) -> None:
    choice = choose_extra_buffers("auto", CpuInfo.parse(text))
    assert choice.enabled is enabled
    if enabled:
        assert "no AMX reported" in choice.reason
    else:
        assert "reports AMX (amx_bf16 amx_int8 amx_tile)" in choice.reason and "off" in choice.reason


@pytest.mark.parametrize("text", [XEON_AMX, EPYC_ZEN4, ""], ids=["xeon-amx", "epyc-zen4", "empty"])
def test_on_and_off_are_obeyed_on_every_cpu(text: str) -> None:
    cpu = CpuInfo.parse(text)
    assert choose_extra_buffers("on", cpu).enabled is True
    assert choose_extra_buffers("off", cpu).enabled is False


def test_one_amx_flag_is_enough() -> None:
    # a kernel may expose only some of the three (e.g. amx_tile without amx_bf16 in a VM)
    for flag in ("amx_tile", "amx_int8", "amx_bf16"):
        assert choose_extra_buffers("auto", CpuInfo.parse(f"flags : avx2 {flag}")).enabled is False


def test_this_machine_is_read_and_unknown_features_are_refused(tmp_path: Path) -> None:
    here = CpuInfo.current()
    assert set(here.features()) <= {"AVX2", "AVX-512", "VNNI", "AMX"}
    assert CpuInfo.current(tmp_path / "no-cpuinfo").features() == []
    with pytest.raises(ValueError, match="unknown CPU feature"):
        here.has("SSE9")
    assert 1 <= physical_cores()


@pytest.mark.parametrize(("text", "choice"), [(XEON_AMX, "off"), (EPYC_ZEN4, "on")], ids=["xeon-amx", "epyc"])
def test_kb_models_reports_features_and_the_choice_for_a_given_cpu(
    tmp_path: Path, text: str, choice: str
) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(text, encoding="utf-8")
    out = io.StringIO()
    home = tmp_path / "home"
    argv = ["--home", str(home), "models", "--json", "--cpuinfo", str(cpuinfo)]
    assert main(argv, out=out) == 0
    status = json.loads(out.getvalue())
    assert status["cpu"]["features"] == CpuInfo.parse(text).features()
    llm = status["llm"]
    assert llm["backend"] == "llamacpp" and llm["process"] == "worker"
    assert llm["extra_buffers"] == choice
    assert ("reports AMX" in llm["extra_buffers_why"]) is (choice == "off")
    text_out = io.StringIO()
    assert main(["--home", str(home), "models", "--cpuinfo", str(cpuinfo)], out=text_out) == 0
    assert f"extra_buffers: {choice}" in text_out.getvalue()
    assert "features: AVX2, AVX-512" in text_out.getvalue()


def test_kb_models_with_a_missing_cpuinfo_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--home", str(tmp_path), "models", "--cpuinfo", str(tmp_path / "nope")])
    assert code == 2
    assert "cannot read --cpuinfo" in capsys.readouterr().err
