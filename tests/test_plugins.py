"""Plugin discovery and the decoder contract: entry points, HARNESS_LOAD_PLUGINS, broken
plugins, extra plugins, hook documentation, class checks and parameters."""

from __future__ import annotations

import inspect
import json
import re
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
import superposition_harness
from superposition_harness import Decoder, Param, ParameterError, hookimpl, hookspecs
from superposition_harness.cli import main
from superposition_harness.decoder import check_decoder_class, parse_params, resolve_params
from superposition_harness.plugins import (
    ENTRY_POINT_GROUP,
    LOAD_ENV,
    PluginInfo,
    Registry,
    UnknownDecoder,
    load_registry,
)

BUILTIN_PACKAGE = "superposition-harness"
BUILTINS = {"threshold", "topk", "mp"}
#: Load only the built-ins, whatever else happens to be installed next to them.
ONLY_BUILTINS = {LOAD_ENV: "threshold,topk,mp"}
#: Modules the fake distributions define; removed from sys.modules after each test.
FAKE_PREFIX = "harness_fake_"


def plugin_info(registry: Registry, name: str, package: str) -> PluginInfo:
    found = [p for p in registry.plugins if p.name == name and p.package == package]
    assert len(found) == 1, f"expected one plugin {name!r} from {package!r}, got {registry.plugins}"
    return found[0]


def one_sentence(message: str) -> bool:
    """One line ending in a full stop, with no sentence boundary inside."""
    return ("\n" not in message and message.endswith(".")
            and re.search(r"[.!?]\s+\S", message[:-1]) is None)


# ----------------------------------------------------------------- fake distributions


@pytest.fixture
def fake_distribution(tmp_path, monkeypatch):
    """Write an installed distribution's metadata and modules under ``tmp_path``, and put
    ``tmp_path`` on sys.path so that importlib.metadata finds its entry points."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def install(dist: str, entry_points: dict[str, str], modules: dict[str, str]) -> Path:
        info = tmp_path / f"{dist.replace('-', '_')}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n", encoding="utf-8")
        lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}", encoding="utf-8")
        for module, source in modules.items():
            assert module.startswith(FAKE_PREFIX)
            (tmp_path / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        return tmp_path

    yield install
    for module in [m for m in sys.modules if m.startswith(FAKE_PREFIX)]:
        del sys.modules[module]


IMPORT_ERROR = """
    raise RuntimeError("this plugin cannot be imported")
"""

HOOK_ERROR = """
    from superposition_harness import hookimpl

    @hookimpl
    def register_decoders(register):
        raise RuntimeError("the hook exploded")
"""

INVALID_CLASS = """
    import numpy as np
    from superposition_harness import Decoder, hookimpl

    class NotADecoder:
        name = "not-a-decoder"

    class Empty(Decoder):
        name = "fake-empty"
        description = "Decodes every signal to the empty set."

        def decode(self, dictionary, signals, *, k, noise):
            return [np.empty(0, dtype=np.int64) for _ in signals]

    @hookimpl
    def register_decoders(register):
        register(NotADecoder)
        register(Empty)
"""

DUPLICATE_MP = """
    from superposition_harness import Decoder, hookimpl

    class ImpostorMP(Decoder):
        name = "mp"
        description = "Claims the built-in name."

        def decode(self, dictionary, signals, *, k, noise):
            return [[] for _ in signals]

    @hookimpl
    def register_decoders(register):
        register(ImpostorMP)
"""

NO_HOOK = """
    VALUE = 1
"""

BROKEN_PLUGINS = {
    "fake-import-error": f"{FAKE_PREFIX}import_error",
    "fake-hook-error": f"{FAKE_PREFIX}hook_error",
    "fake-invalid": f"{FAKE_PREFIX}invalid",
    "fake-duplicate": f"{FAKE_PREFIX}duplicate",
    # the same entry-point name as a built-in plugin
    "topk": f"{FAKE_PREFIX}topk_clash",
}
BROKEN_MODULES = {
    f"{FAKE_PREFIX}import_error": IMPORT_ERROR,
    f"{FAKE_PREFIX}hook_error": HOOK_ERROR,
    f"{FAKE_PREFIX}invalid": INVALID_CLASS,
    f"{FAKE_PREFIX}duplicate": DUPLICATE_MP,
    f"{FAKE_PREFIX}topk_clash": DUPLICATE_MP,
}


# ------------------------------------------------------------------------- discovery


def test_builtins_are_discovered_from_entry_points():
    registry = load_registry(env={})
    assert set(registry.decoders) >= BUILTINS
    for name in BUILTINS:
        entry = registry.get(name)
        assert entry.package == BUILTIN_PACKAGE
        assert entry.plugin == name
        assert entry.version == superposition_harness.__version__
        info = plugin_info(registry, name, BUILTIN_PACKAGE)
        assert info.module == f"superposition_harness_builtins.{name}"
        assert info.decoders == [name]
        assert info.error is None
        assert info.as_dict()["hooks"] == ["register_decoders"]


def test_builtin_classes_pass_the_class_checks():
    registry = load_registry(env=ONLY_BUILTINS)
    for name in BUILTINS:
        assert check_decoder_class(registry.get(name).cls) is None


@pytest.mark.parametrize("value, loaded", [
    ("mp", {"mp"}),
    ("", set()),
    (" topk , mp ", {"topk", "mp"}),
])
def test_load_env_restricts_which_plugins_load(value, loaded):
    registry = load_registry(env={LOAD_ENV: value})
    assert {p.name for p in registry.plugins} == loaded
    assert set(registry.decoders) == loaded
    assert registry.errors == []


def test_a_name_in_the_load_env_that_matches_no_plugin_is_reported():
    registry = load_registry(env={LOAD_ENV: "mp,no-such-plugin"})
    assert set(registry.decoders) == {"mp"}
    [missing] = registry.errors
    assert missing.name == "no-such-plugin"
    assert missing.error == f"no installed plugin is called 'no-such-plugin' (named in {LOAD_ENV})"


def test_load_env_is_read_from_the_process_environment(monkeypatch):
    monkeypatch.setenv(LOAD_ENV, "threshold")
    assert set(load_registry().decoders) == {"threshold"}


def test_broken_plugins_are_recorded_and_the_others_load(fake_distribution):
    # "zz-…" sorts after "superposition-harness", so the built-ins come first.
    fake_distribution("zz-fakepkg", BROKEN_PLUGINS, BROKEN_MODULES)
    registry = load_registry(env={})

    for name in BUILTINS:
        assert registry.get(name).package == BUILTIN_PACKAGE
        assert plugin_info(registry, name, BUILTIN_PACKAGE).error is None
    assert registry.get("mp").cls.__name__ == "MatchingPursuit"

    failed = plugin_info(registry, "fake-import-error", "zz-fakepkg")
    assert failed.error.startswith("RuntimeError: this plugin cannot be imported")
    assert f"{FAKE_PREFIX}import_error.py" in failed.error
    assert failed.version == "0.1"
    assert failed.decoders == []
    assert failed.as_dict()["hooks"] == []

    hook = plugin_info(registry, "fake-hook-error", "zz-fakepkg")
    assert hook.error.startswith("register_decoders failed: RuntimeError: the hook exploded")
    assert hook.decoders == []

    invalid = plugin_info(registry, "fake-invalid", "zz-fakepkg")
    assert "is not a subclass of superposition_harness.Decoder" in invalid.error
    assert invalid.decoders == ["fake-empty"]  # the valid class of the same plugin registers
    assert registry.get("fake-empty").package == "zz-fakepkg"

    duplicate = plugin_info(registry, "fake-duplicate", "zz-fakepkg")
    assert duplicate.error == ("decoder 'mp' is already registered by plugin 'mp' "
                               "(superposition-harness)")
    assert duplicate.decoders == []

    clash = plugin_info(registry, "topk", "zz-fakepkg")
    assert clash.error == ("another plugin is already called 'topk' (from superposition-harness); "
                           "this one was not loaded")
    assert f"{FAKE_PREFIX}topk_clash" not in sys.modules  # never imported

    assert {(p.name, p.package) for p in registry.errors} == {
        (name, "zz-fakepkg") for name in BROKEN_PLUGINS}


def test_broken_plugins_do_not_stop_the_plugins_command(fake_distribution, monkeypatch, capsys):
    fake_distribution("zz-fakepkg", BROKEN_PLUGINS, BROKEN_MODULES)
    monkeypatch.setenv(LOAD_ENV, "mp,fake-import-error,fake-hook-error")
    assert main(["plugins", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in document["decoders"]] == ["mp"]
    errors = {p["name"]: p["error"] for p in document["plugins"]}
    assert errors["mp"] is None
    assert errors["fake-import-error"].startswith("RuntimeError:")
    assert errors["fake-hook-error"].startswith("register_decoders failed:")


def test_load_env_keeps_unlisted_plugins_from_being_imported(fake_distribution):
    fake_distribution("zz-fakepkg", BROKEN_PLUGINS, BROKEN_MODULES)
    registry = load_registry(env={LOAD_ENV: "mp"})
    assert set(registry.decoders) == {"mp"}
    assert registry.errors == []
    assert not [m for m in sys.modules if m.startswith(FAKE_PREFIX)]


def test_a_plugin_without_hooks_registers_nothing(fake_distribution):
    fake_distribution("zz-fakepkg", {"fake-no-hook": f"{FAKE_PREFIX}no_hook"},
                      {f"{FAKE_PREFIX}no_hook": NO_HOOK})
    registry = load_registry(env={LOAD_ENV: "fake-no-hook"})
    info = plugin_info(registry, "fake-no-hook", "zz-fakepkg")
    assert info.decoders == []
    assert registry.decoders == {}


def test_a_third_party_package_cannot_take_a_builtin_name(fake_distribution):
    # "fakepkg" sorts before "superposition-harness".
    fake_distribution("fakepkg", {"fake-duplicate": f"{FAKE_PREFIX}duplicate",
                                  "topk": f"{FAKE_PREFIX}topk_clash"},
                      {f"{FAKE_PREFIX}duplicate": DUPLICATE_MP,
                       f"{FAKE_PREFIX}topk_clash": DUPLICATE_MP})
    registry = load_registry(env={})
    assert registry.get("mp").package == BUILTIN_PACKAGE
    assert registry.get("topk").package == BUILTIN_PACKAGE
    assert plugin_info(registry, "mp", BUILTIN_PACKAGE).error is None
    assert plugin_info(registry, "fake-duplicate", "fakepkg").error is not None


# ------------------------------------------------------------------- extra plugins


class EchoDecoder(Decoder):
    """Decodes each signal to the codewords whose correlation is exactly its maximum."""

    name = "fixture-echo"
    description = "Test-only: the codewords with the largest correlation."
    parameters = (Param("offset", int, 0, "added to nothing; a parameter to pass"),)

    def decode(self, dictionary, signals, *, k, noise):
        correlations = dictionary.correlate(signals)
        return [np.flatnonzero(row == row.max()) for row in correlations]


class EchoPlugin:
    """A plugin given as a class with a static hook implementation."""

    @staticmethod
    @hookimpl
    def register_decoders(register):
        register(EchoDecoder)


@pytest.fixture
def echo_registry():
    """A registry with the built-ins and, for this test only, the echo plugin."""
    return load_registry(extra_plugins=[EchoPlugin], env=ONLY_BUILTINS)


def test_extra_plugins_register_for_one_test_only(echo_registry):
    entry = echo_registry.get("fixture-echo")
    assert entry.plugin == "EchoPlugin"
    assert entry.cls is EchoDecoder
    assert set(echo_registry.decoders) >= BUILTINS
    info = plugin_info(echo_registry, "EchoPlugin", entry.package)
    assert info.decoders == ["fixture-echo"] and info.error is None
    # nothing global was changed: a fresh registry does not see the extra plugin
    assert "fixture-echo" not in load_registry(env=ONLY_BUILTINS).decoders


def test_extra_plugins_may_be_modules_or_instances():
    module = types.ModuleType("harness_fixture_module")

    @hookimpl
    def register_decoders(register):
        register(EchoDecoder)

    module.register_decoders = register_decoders

    class Instance:
        @hookimpl
        def register_decoders(self, register):
            register(make_decoder(name="fixture-instance"))

    registry = load_registry(extra_plugins=[module, Instance()], env={LOAD_ENV: ""})
    assert set(registry.decoders) == {"fixture-echo", "fixture-instance"}
    assert registry.get("fixture-echo").plugin == "harness_fixture_module"
    assert registry.get("fixture-instance").plugin == "Instance"


def test_extra_plugin_decoders_work_with_parameters(echo_registry):
    from superposition_harness import MatrixDictionary

    entry = echo_registry.get("fixture-echo")
    decoder = entry.cls(**parse_params(entry.cls, {"offset": "3"}))
    assert decoder.offset == 3 and decoder.params == {"offset": 3}
    dictionary = MatrixDictionary(np.eye(4, dtype=np.float32))
    decoded = decoder.decode(dictionary, np.array([[0, 0, 2, 0], [5, 0, 0, 1]], np.float32),
                             k=1, noise=0.0)
    assert [list(row) for row in decoded] == [[2], [0]]


def test_an_extra_plugin_cannot_take_a_loaded_plugin_name():
    module = types.ModuleType("mp")

    @hookimpl
    def register_decoders(register):
        register(make_decoder(name="fixture-other"))

    module.register_decoders = register_decoders
    registry = load_registry(extra_plugins=[module], env={LOAD_ENV: "mp"})
    assert registry.get("mp").package == BUILTIN_PACKAGE
    assert plugin_info(registry, "mp", BUILTIN_PACKAGE).error is None


# --------------------------------------------------------------------- Registry.get


@pytest.mark.parametrize("typo, suggestion", [
    ("tpok", "'topk'"), ("mpp", "'mp'"), ("treshold", "'threshold'")])
def test_unknown_decoder_suggests_close_names(typo, suggestion):
    registry = load_registry(env=ONLY_BUILTINS)
    with pytest.raises(UnknownDecoder) as caught:
        registry.get(typo)
    message = str(caught.value)
    assert f"no decoder named {typo!r}" in message
    assert f"did you mean {suggestion}" in message
    assert "mp, threshold, topk" in message


def test_unknown_decoder_without_close_names_lists_the_installed_ones():
    registry = load_registry(env=ONLY_BUILTINS)
    with pytest.raises(UnknownDecoder) as caught:
        registry.get("lasso-coordinate-descent")
    assert "did you mean" not in str(caught.value)
    # the plugins left out by HARNESS_LOAD_PLUGINS are not called "not installed"
    assert "their decoders: mp, threshold, topk" in str(caught.value)
    assert f"add its plugin to {LOAD_ENV}" in str(caught.value)
    assert "installed decoders" not in str(caught.value)


def test_unknown_decoder_among_every_installed_plugin_lists_them():
    with pytest.raises(UnknownDecoder, match="installed decoders: .*mp.*topk"):
        load_registry(env={}).get("lasso-coordinate-descent")


def test_unknown_decoder_with_no_plugin_loaded_says_why():
    with pytest.raises(UnknownDecoder, match=f"{LOAD_ENV} is set but empty, so no plugin loads"):
        load_registry(env={LOAD_ENV: ""}).get("mp")


# ---------------------------------------------------------------------------- hooks


def hookspec_functions():
    marker = f"{hookspecs.PROJECT}_spec"
    return [fn for _, fn in inspect.getmembers(hookspecs, inspect.isfunction)
            if hasattr(fn, marker)]


def test_there_are_hookspecs_and_register_decoders_is_one():
    assert "register_decoders" in {fn.__name__ for fn in hookspec_functions()}


@pytest.mark.parametrize("spec", hookspec_functions(), ids=lambda fn: fn.__name__)
def test_every_hook_is_documented(spec):
    doc = inspect.getdoc(spec)
    assert doc, f"hook {spec.__name__} has no docstring"
    assert doc.splitlines()[0].endswith(".")
    for argument in inspect.signature(spec).parameters:
        assert argument in doc, f"hook {spec.__name__} does not document {argument!r}"


# ----------------------------------------------------------------- class checks


def make_decoder(**attributes):
    """A valid decoder class, with ``attributes`` overriding its declarations."""
    namespace = {
        "name": "fixture",
        "description": "Test-only: the empty set.",
        "parameters": (Param("width", int, 1, "a parameter"),),
        "decode": lambda self, dictionary, signals, *, k, noise: [[] for _ in signals],
    }
    namespace.update(attributes)
    return type("FixtureDecoder", (Decoder,), namespace)


def test_a_valid_decoder_class_passes():
    assert check_decoder_class(make_decoder()) is None


class Abstract(Decoder):
    name = "abstract"
    description = "Does not implement decode."


@pytest.mark.parametrize("candidate, expected", [
    (object, "is not a subclass of superposition_harness.Decoder"),
    (make_decoder, "is not a subclass of superposition_harness.Decoder"),  # a function
    (make_decoder(name="Bad Name"), "must be a lower-case name such as 'mp'"),
    (make_decoder(name=""), "must be a lower-case name"),
    (make_decoder(name="9lives"), "must be a lower-case name"),
    (make_decoder(name=None), "must be a lower-case name"),
    (make_decoder(description=""), "decoder 'fixture' has no description"),
    (make_decoder(description="   "), "decoder 'fixture' has no description"),
    (Abstract, "decoder 'abstract' does not implement decode()"),
    (make_decoder(parameters=(Param("width", int, 1, "a"), Param("width", int, 2, "b"))),
     "decoder 'fixture' declares parameter 'width' twice"),
    (make_decoder(parameters=("width",)), "declares a parameter that is not a Param"),
    (make_decoder(__annotations__={"width": "float"}),
     "declares parameter 'width' as int but annotates it as float"),
    (make_decoder(__annotations__={"width": bool}),
     "declares parameter 'width' as int but annotates it as bool"),
], ids=["object", "function", "spaces", "empty-name", "digit-first", "none-name",
        "no-description", "blank-description", "abstract", "duplicate-params", "not-param",
        "annotation-disagrees", "annotation-type-disagrees"])
def test_check_decoder_class_rejects(candidate, expected):
    problem = check_decoder_class(candidate)
    assert problem is not None and expected in problem


@pytest.mark.parametrize("annotation", ["int", int])
def test_a_parameter_annotated_with_its_type_passes(annotation):
    decoder = make_decoder(__annotations__={"width": annotation})
    assert check_decoder_class(decoder) is None and decoder().width == 1


@pytest.mark.parametrize("name", ["mp", "lasso-cd", "amp_binary", "sae.topk", "omp2"])
def test_check_decoder_class_accepts_names(name):
    assert check_decoder_class(make_decoder(name=name)) is None


def test_a_single_param_without_a_tuple_is_reported_not_raised():
    problem = check_decoder_class(make_decoder(parameters=Param("width", int, 1, "a")))
    assert problem is not None and "parameters" in problem


def test_invalid_classes_from_extra_plugins_are_errors_not_crashes():
    class Plugin:
        @staticmethod
        @hookimpl
        def register_decoders(register):
            register(make_decoder(name="Bad Name"))
            register(make_decoder(name="fixture-good"))

    registry = load_registry(extra_plugins=[Plugin], env={LOAD_ENV: ""})
    assert set(registry.decoders) == {"fixture-good"}
    [info] = registry.errors
    assert "must be a lower-case name" in info.error


# ----------------------------------------------------------------------- parameters


@pytest.mark.parametrize("kind, text, value", [
    (int, "3", 3), (int, " -7 ", -7),
    (float, "0.25", 0.25), (float, "1", 1.0), (float, "1e-3", 0.001),
    (bool, "true", True), (bool, "False", False), (bool, "1", True), (bool, "no", False),
    (bool, "YES", True),
    (str, "relu", "relu"), (str, "  jump relu ", "jump relu"),
])
def test_param_parse_converts_text(kind, text, value):
    default = {int: 0, float: 0.0, bool: False, str: ""}[kind]
    parsed = Param("p", kind, default, "a parameter").parse(text, "dec")
    assert parsed == value and type(parsed) is kind


@pytest.mark.parametrize("kind, text, expected", [
    (int, "3.5", "decoder 'dec' parameter 'p' must be an integer, not '3.5'."),
    (int, "", "decoder 'dec' parameter 'p' must be an integer, not ''."),
    (float, "abc", "decoder 'dec' parameter 'p' must be a number, not 'abc'."),
    (float, "nan", "decoder 'dec' parameter 'p' must be a finite number, not nan."),
    (float, "inf", "decoder 'dec' parameter 'p' must be a finite number, not inf."),
    (bool, "maybe", "decoder 'dec' parameter 'p' must be true or false, not 'maybe'."),
])
def test_param_parse_rejects_text_in_one_sentence(kind, text, expected):
    default = {int: 0, float: 0.0, bool: False, str: ""}[kind]
    with pytest.raises(ParameterError) as caught:
        Param("p", kind, default, "a parameter").parse(text, "dec")
    assert str(caught.value) == expected
    assert one_sentence(str(caught.value))


def test_param_check_converts_ints_to_float():
    value = Param("p", float, 0.5, "a").check(2, "dec")
    assert value == 2.0 and type(value) is float


@pytest.mark.parametrize("param, value, fragment", [
    (Param("p", int, 1, "a"), 1.5, "must be an integer, not 1.5"),
    (Param("p", int, 1, "a"), True, "must be an integer, not True"),
    (Param("p", float, 1.0, "a"), "1", "must be a number, not '1'"),
    (Param("p", float, 1.0, "a"), False, "must be a number, not False"),
    (Param("p", bool, True, "a"), 1, "must be true or false, not 1"),
    (Param("p", str, "a", "a"), 3, "must be a string, not 3"),
    (Param("p", str, "relu", "a", choices=("relu", "topk")), "gelu",
     "must be one of 'relu', 'topk', not 'gelu'"),
    (Param("p", int, 4, "a", choices=(2, 4, 8)), 3, "must be one of 2, 4, 8, not 3"),
    (Param("p", int, 1, "a", minimum=1), 0, "must be at least 1, not 0"),
    (Param("p", float, 0.5, "a", minimum=0.0, maximum=1.0), 1.5, "must be at most 1.0, not 1.5"),
    (Param("p", float, 0.5, "a", minimum=0.0, maximum=1.0), -0.5,
     "must be at least 0.0, not -0.5"),
])
def test_param_check_rejects_values_in_one_sentence_naming_decoder_and_parameter(
        param, value, fragment):
    with pytest.raises(ParameterError) as caught:
        param.check(value, "dec")
    message = str(caught.value)
    assert message.startswith("decoder 'dec' parameter 'p' ")
    assert fragment in message
    assert one_sentence(message)


def test_param_bounds_are_inclusive():
    param = Param("p", float, 0.5, "a", minimum=0.0, maximum=1.0)
    assert param.check(0.0) == 0.0 and param.check(1.0) == 1.0
    assert Param("p", int, 2, "a", minimum=2, maximum=2).parse("2") == 2


def test_param_parse_checks_choices_and_bounds_after_converting():
    with pytest.raises(ParameterError, match="must be at least 0, not -1"):
        Param("p", int, 0, "a", minimum=0).parse("-1", "dec")
    assert Param("p", float, 0.5, "a", choices=(0.5, 1.0)).parse("1", "dec") == 1.0


def test_param_declarations_are_checked_when_made():
    with pytest.raises(TypeError, match="type must be one of int, float, bool, str"):
        Param("p", list, [], "a")
    with pytest.raises(ParameterError, match="must be at least 1, not 0"):
        Param("p", int, 0, "a", minimum=1)
    with pytest.raises(ParameterError, match="must be one of"):
        Param("p", str, "gelu", "a", choices=("relu",))


def test_param_describe_is_plain_data():
    described = Param("p", float, 0.5, "a level", minimum=0.0, choices=(0.5, 1.0)).describe()
    assert isinstance(described.pop("type"), str)
    assert described == {"name": "p", "default": 0.5, "help": "a level",
                         "choices": [0.5, 1.0], "minimum": 0.0}
    assert "maximum" not in described
    json.dumps(described)


THRESHOLD = make_decoder(name="thresh", parameters=(
    Param("level", float, 0.5, "the level"),
    Param("positive", bool, False, "only positive correlations"),
))


def test_resolve_params_fills_defaults_and_checks_values():
    assert resolve_params(THRESHOLD, {}) == {"level": 0.5, "positive": False}
    assert resolve_params(THRESHOLD, {"level": 1}) == {"level": 1.0, "positive": False}
    with pytest.raises(ParameterError) as caught:
        resolve_params(THRESHOLD, {"positive": "yes"})
    assert str(caught.value) == "decoder 'thresh' parameter 'positive' must be true or false, not 'yes'."


def test_decoder_init_stores_parameters_unchanged():
    decoder = THRESHOLD(level=0.25)
    assert decoder.params == {"level": 0.25, "positive": False}
    assert decoder.level == 0.25 and decoder.positive is False
    assert repr(decoder) == "FixtureDecoder(level=0.25, positive=False)"


@pytest.mark.parametrize("call", [
    lambda: resolve_params(THRESHOLD, {"levle": 0.3}),
    lambda: parse_params(THRESHOLD, {"levle": "0.3"}),
    lambda: THRESHOLD(levle=0.3),
])
def test_unknown_parameters_are_rejected_with_a_suggestion(call):
    with pytest.raises(ParameterError) as caught:
        call()
    message = str(caught.value)
    assert message == ("decoder 'thresh' has no parameter 'levle' (did you mean 'level'?); "
                       "its parameters are: level, positive.")


def test_unknown_parameters_without_close_match_list_the_declared_ones():
    with pytest.raises(ParameterError) as caught:
        parse_params(THRESHOLD, {"iterations": "3"})
    assert "did you mean" not in str(caught.value)
    assert str(caught.value).endswith("its parameters are: level, positive.")


def test_a_decoder_without_parameters_says_so():
    plain = make_decoder(name="plain", parameters=())
    with pytest.raises(ParameterError) as caught:
        parse_params(plain, {"level": "1"})
    assert str(caught.value) == "decoder 'plain' takes no parameters, but 'level' was given."


def test_parse_params_returns_only_the_given_parameters():
    assert parse_params(THRESHOLD, {"positive": "yes"}) == {"positive": True}
