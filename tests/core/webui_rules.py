"""The archive and pickle allow-lists of stock webui v1.10.1's safe unpickler (contract
§1.1), restated as data so tests can check files we write against them."""

import pickletools
import re
import zipfile

ALLOWED_RECORD = re.compile(r"^([^/]+)/((data/\d+)|version|byteorder|(\.data/serialization_id)|(data\.pkl))$")
ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_device_tensor_from_numpy"),
    ("torch", "FloatStorage"),
    ("torch", "HalfStorage"),
    ("torch", "IntStorage"),
    ("torch", "LongStorage"),
    ("torch", "DoubleStorage"),
    ("torch", "ByteStorage"),
    ("torch", "BFloat16Storage"),
    ("torch", "float32"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("builtins", "set"),
    ("__builtin__", "set"),
}


def pickle_globals(data: bytes) -> set[tuple[str, str]]:
    """Every (module, name) a pickle asks for, GLOBAL and STACK_GLOBAL alike."""
    found = set()
    strings = []
    for opcode, argument, _ in pickletools.genops(data):
        if opcode.name == "GLOBAL":
            module, name = argument.split(" ", 1)
            found.add((module, name))
        elif opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
            strings.append(argument)
        elif opcode.name == "STACK_GLOBAL":
            found.add((strings[-2], strings[-1]))
    return found


def webui_would_refuse(path) -> list[str]:
    """Reasons stock webui v1.10.1 (safe unpickle on) would refuse the file; [] if none."""
    reasons = []
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if not ALLOWED_RECORD.match(name):
                reasons.append(f"record {name}")
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        for name in pickles:
            for module, attribute in pickle_globals(archive.read(name)) - ALLOWED_GLOBALS:
                reasons.append(f"global {module}.{attribute}")
    return reasons
