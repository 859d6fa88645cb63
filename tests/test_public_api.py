"""The flat public API resolves every name it promises, without importing torch up front."""

import subprocess
import sys

import vo_similarity


def test_every_public_name_resolves():
    for name in vo_similarity.__all__:
        assert getattr(vo_similarity, name) is not None, name


def test_public_names_survive_importing_every_subpackage():
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(vo_similarity.__path__):
        if info.name != "__main__":  # that one runs the command line
            importlib.import_module(f"vo_similarity.{info.name}")
    for name in vo_similarity.__all__:
        value = getattr(vo_similarity, name)
        assert not isinstance(value, type(vo_similarity)), f"{name} is shadowed by a subpackage"


def test_unknown_name_is_an_attribute_error():
    try:
        vo_similarity.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_and_help_stay_light():
    code = ("import sys, vo_similarity.cli as c; c.build_parser(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_all_lists_exactly_the_lazy_names():
    assert sorted(vo_similarity.__all__) == sorted(vo_similarity._WHERE)
