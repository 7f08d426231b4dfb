"""The PEFT method mechanism: the `Method` base class, the `AdaptedLinear` wrapper and the option schema.

How to add a method (one file, no central list to edit)
-------------------------------------------------------
1. Create `rankflow_runtime/methods/<name>.py`. The package imports every module in it, so the file is
   found automatically; decorate the class with `@register` (from `rankflow_runtime.methods.base`).
2. Declare the options as a dataclass whose fields use `option(default, help=..., choices=..., min=..., max=...)`.
   Their types (float/int/bool/str/list, or `choices`) become the schema that `describe` prints and that
   `method.options` in a run spec is validated against.
3. Subclass `Method` and set the class attributes: `name` (the registry key used in recipes), `paper`
   (citation), `Options`, `needs_rank`, `init_is_identity` (the adapted model equals the base model at
   initialisation), `mergeable` (ΔW can be folded into the base weight), `lr_groups` (names of extra
   parameter groups that may get their own learning rate through `training.lr_groups`).
   `init_is_identity`, `mergeable` and `count_is_exact` (the shapes-only `count` equals the trained model's;
   False when ranks come from the weights' values) are the values **with the default options**; when an option changes
   them, declare it in `property_rules`, e.g. `({"when": {"init": ["ones", "zeros"]}, "then":
   {"init_is_identity": False}},)`: a rule applies when every option it names has one of the listed values,
   later rules win. A method instance carries the values for its own options (`method.init_is_identity`),
   and `describe` prints the rules.
4. Write the trainable-parameter formula: `layer_count(d_out, d_in)` per adapted layer, plus
   `shared_count(shapes)` for parameters shared by all layers (or override `count(shapes)` entirely).
   The conformance suite checks that it equals the number of trainable elements actually created.
5. Subclass `AdaptedLinear` for the layer: create the adapter parameters in `__init__` (after
   `super().__init__(base, method, shared)`), and implement `adapter_forward(x, base_out)`
   (the output of the adapted layer; `base_out = self.base(x)` is passed in so additive methods do
   `base_out + delta(x)`), and, if `mergeable`, `delta_weight()` (the dense ΔW, shape (d_out, d_in)).
   Return an instance from `Method.wrap(name, base, shared)`. For an additive low-rank update
   y = W0 x + s·B A dropout(x), subclass `LowRankLinear` instead and only provide the factors (see lora.py).
   * Meta device: `count` builds the model on `torch.device("meta")`. Create parameters with the right
     shapes there and skip numeric initialisation that needs values (SVD, QR, ...): test `self.on_meta`.
   * Randomness for fixed bases must come from `self.method.generator()` (a CPU generator seeded by
     the run seed and the method's own seed option), so bases are identical across devices and resumes.
   * Tensor state that changes during training but is not a parameter (masks, scores, allocations):
     register it as a persistent buffer on the adapter; such buffers are saved in checkpoints. Fixed
     random bases that can be regenerated may be non-persistent buffers (`persistent=False`).
6. Shared per-model state (VeRA/RandLoRA bases, MoS shard pools): override `create_shared(shapes, device,
   dtype)` to return an `nn.Module` built once per model from the list of all target shapes; it is
   attached to the model as `rankflow_shared` (its trainable parameters train, its persistent buffers are
   checkpointed) and passed to every `wrap` call; `AdaptedLinear.shared` gives it back.
7. Optional training hooks, called with a `TrainContext` (model, step, total_steps, optimizer, scheduler,
   epoch, loss, ...) in the order documented in ONE place, `rankflow_runtime/step.py`: `on_train_start`,
   `before_forward`, `extra_loss` (a tensor added to the loss, e.g. a regulariser), `after_backward` (raw
   gradients, before clipping and the optimizer step), `after_optimizer_step` (clipped gradients still in
   `p.grad`, weights updated, before `zero_grad`: AdaLoRA-style importance and masking), `after_step` (after
   zero_grad; `ctx.step` counts the steps done). Small JSON-able values that the hooks update go in
   `extra_state()` / `load_extra_state()`; tensors (importance EMAs, masks) go in persistent buffers; both
   are checkpointed.
   Parameters that appear during training: create them on the module (e.g. append to an `nn.ParameterList`)
   and call `ctx.add_parameters(params, lr_group=..., restart_warmup=..., weight_decay=...)`; override
   `prepare_load(model, state)` to re-create them from a checkpoint's tensor names and shapes (it runs
   before the adapter tensors and the optimizer state are loaded). A method that decides where capacity goes
   reports it with `allocation(model)` (events and the result record).
8. Parameter groups: override `group_of(param_name)` to return one of `lr_groups` (default "default").
9. Methods that do not wrap linear layers (full fine-tuning, probing, prompts) override `adapt(model,
   targets, ctx)` and `formula(model, shapes, ctx)`; see `full.py`, `linear_probe.py` and `prompt_tuning.py`
   (input-embedding adaptation: a forward pre-hook on the model; `reserved_positions` makes the data leave
   room for the prompt; `model_tasks` lists the model tasks a method applies to; `decays` turns weight
   decay off for chosen tensors).

The conformance suite (`tests/test_conformance.py`) runs over every registered method on the three built-in
models, so a new method is tested as soon as its file exists.
"""
from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..errors import ConfigError
from ..options import NoOptions, option, options_schema, parse_options  # noqa: F401 (re-exported)

REGISTRY: Dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: add a Method subclass to the registry under `cls.name`."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise TypeError(f"method name {cls.name!r} registered twice ({REGISTRY[cls.name].__name__}, {cls.__name__})")
    _check_property_rules(cls)
    REGISTRY[cls.name] = cls
    return cls


def _check_property_rules(cls: type) -> None:
    """`property_rules` name real options and properties, and no rule matches the default options (the class
    attributes are the values with the defaults)."""
    fields = {f.name for f in dataclasses.fields(cls.Options)}
    for rule in cls.property_rules:
        if set(rule) != {"when", "then"} or not rule["when"]:
            raise TypeError(f"{cls.name}: a property rule is {{'when': {{option: [values]}}, 'then': {{...}}}}")
        bad = [o for o in rule["when"] if o not in fields] + [p for p in rule["then"] if p not in OPTION_PROPERTIES]
        if bad:
            raise TypeError(f"{cls.name}: property rule names unknown options/properties {bad}")
    defaults = dataclasses.asdict(cls.Options())
    if cls.properties_for(defaults) != {p: getattr(cls, p) for p in OPTION_PROPERTIES}:
        raise TypeError(f"{cls.name}: a property rule matches the default options; set the class attribute instead")

Shape = Tuple[int, int]  # (d_out, d_in) of an nn.Linear weight
SHARED_ATTR = "rankflow_shared"
OPTION_PROPERTIES = ("init_is_identity", "mergeable", "count_is_exact")  # what `property_rules` may set

# --------------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------------


# option(), NoOptions, options_schema() and parse_options() live in ..options (one mechanism for method,
# procedure and dataset options); they are re-exported here for the method files.


# --------------------------------------------------------------------------------------------------
# Training context passed to hooks
# --------------------------------------------------------------------------------------------------


@dataclass
class TrainContext:
    """What a method hook sees. `step` counts optimizer steps already taken (0 before the first); the hook
    order is documented in `rankflow_runtime/step.py`."""

    model: nn.Module
    step: int
    total_steps: int
    optimizer: Optional[torch.optim.Optimizer] = None
    scheduler: Any = None
    epoch: float = 0.0  # fractional: epochs done before this step's first micro-batch
    total_epochs: Optional[float] = None  # epochs the run covers (None: the loop does not count epochs)
    loss: Optional[torch.Tensor] = None
    batch: Optional[Dict[str, torch.Tensor]] = None
    device: Optional[torch.device] = None
    grow: Optional[Callable[..., Any]] = None  # set by the Stepper: implements add_parameters

    def add_parameters(self, params: Sequence[nn.Parameter], *, lr_group: str = "default",
                       restart_warmup: bool = False, weight_decay: Optional[float] = None) -> List[Dict[str, Any]]:
        """Hand tensors created during training (already registered on the model, requires_grad) to the
        optimizer as new parameter groups: lr from `training.lr_groups[lr_group]` (else `training.lr`), weight
        decay `weight_decay` (None: training.weight_decay on ≥ 2-D tensors, 0 otherwise). With `restart_warmup`
        the group gets its own warmup from the next step and decays over the steps left (IncreLoRA's
        `Multi_LambdaLR`); otherwise it follows the global schedule. They first update at the next step.
        A checkpoint records the groups by parameter name; on resume the method must re-create the tensors
        in `prepare_load`, and the groups are re-created before the optimizer state is loaded."""
        if self.grow is None:
            raise RuntimeError("add_parameters: this training loop does not step through rankflow_runtime.step.Stepper")
        return self.grow(params, lr_group=lr_group, restart_warmup=restart_warmup, weight_decay=weight_decay)


@dataclass
class AdaptContext:
    """Facts about the model (and the run's inputs) a method may need while adapting it."""

    head_name: Optional[str] = None  # module name of the task head (classifier / lm_head)
    train_head: bool = False
    task: Optional[str] = None  # seq-cls / img-cls / causal-lm
    max_length: Optional[int] = None  # the longest input the data gives (dataset.max_length or the model's limit)
    max_positions: Optional[int] = None  # the model's position limit (inputs plus prompt tokens must fit)
    pad_token_id: Optional[int] = None
    tokenize: Optional[Callable[[str], List[int]]] = None  # the run's text tokenizer (no special tokens)


# --------------------------------------------------------------------------------------------------
# The adapted layer
# --------------------------------------------------------------------------------------------------


class AdaptedLinear(nn.Module):
    """Wraps a frozen `nn.Linear` (kept as `self.base`, so its weights keep their state-dict keys under
    `<name>.base.`) and adds a method's trainable update. Subclasses implement `adapter_forward` and, when
    mergeable, `delta_weight`."""

    def __init__(self, base: nn.Linear, method: Method, shared: Optional[nn.Module] = None):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"AdaptedLinear wraps nn.Linear, got {type(base).__name__}")
        self.base = base
        self.in_features = base.in_features
        self.out_features = base.out_features
        self.merged = False
        # Plain attributes (not submodules): the method and the shared module are registered elsewhere.
        self.__dict__["method"] = method
        self.__dict__["_shared"] = shared
        for p in self.base.parameters():
            p.requires_grad_(False)

    # -- conveniences --------------------------------------------------------------------------------
    @property
    def shared(self) -> Optional[nn.Module]:
        return self.__dict__["_shared"]

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    @property
    def bias(self) -> Optional[torch.Tensor]:
        return self.base.bias

    @property
    def on_meta(self) -> bool:
        return self.base.weight.is_meta

    @property
    def adapter_dtype(self) -> torch.dtype:
        """dtype for new adapter parameters: fp32 when the base is half precision (autocast handles the
        matmuls), the base dtype otherwise."""
        dt = self.base.weight.dtype
        return torch.float32 if dt in (torch.float16, torch.bfloat16) else dt

    @property
    def device(self) -> torch.device:
        return self.base.weight.device

    # -- to implement --------------------------------------------------------------------------------
    def adapter_forward(self, x: torch.Tensor, base_out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def delta_weight(self) -> torch.Tensor:
        """Dense ΔW (d_out, d_in) such that the adapted layer equals a linear layer with W0 + ΔW."""
        raise NotImplementedError(f"{type(self).__name__} is not mergeable")

    def needs_base_out(self) -> bool:
        """Return False if adapter_forward does not use `base_out` (reparametrising methods), so the base
        matmul is skipped."""
        return True

    # -- generic ------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base(x)
        base_out = self.base(x) if self.needs_base_out() else None
        return self.adapter_forward(x, base_out)

    @torch.no_grad()
    def merge(self) -> None:
        if self.merged:
            return
        delta = self.delta_weight()
        self.base.weight.data += delta.to(self.base.weight.dtype)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        delta = self.delta_weight()
        self.base.weight.data -= delta.to(self.base.weight.dtype)
        self.merged = False

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, method={self.method.name}"


class LowRankLinear(AdaptedLinear):
    """An additive low-rank update, y = W0 x + s·B A dropout(x) with ΔW = s·B A, for methods that differ only in
    where A ∈ R^{r×d_in} and B ∈ R^{d_out×r} come from (LoRA, PiSSA: parameters; NOLA: combinations of random
    bases; MoS: shards gathered from shared pools). Subclasses set `self.scaling` (s) and `self.dropout` and,
    unless A and B are the parameters `lora_A` and `lora_B`, override `factors()`."""

    def factors(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """(A, B): A of shape (r, d_in), B of shape (d_out, r)."""
        return self.lora_A, self.lora_B

    def adapter_forward(self, x: torch.Tensor, base_out: torch.Tensor) -> torch.Tensor:
        a, b = self.factors()
        h = self.dropout(x).to(a.dtype)
        delta = (h @ a.t()) @ b.t()
        return base_out + (delta * self.scaling).to(base_out.dtype)

    def delta_weight(self) -> torch.Tensor:
        a, b = self.factors()
        return (b @ a) * self.scaling


# --------------------------------------------------------------------------------------------------
# The method
# --------------------------------------------------------------------------------------------------


class Method:
    """A PEFT method. One instance per run: `Method(rank, options, seed)`; see the module docstring."""

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    needs_rank: ClassVar[bool] = True
    init_is_identity: ClassVar[bool] = True  # with the default options; see property_rules
    mergeable: ClassVar[bool] = False  # with the default options; see property_rules
    # `count` (shapes only, on the meta device) gives the trained model's number; False when the trainable count
    # depends on the weights' values (ranks chosen from a spectrum): `count` is then an estimate.
    count_is_exact: ClassVar[bool] = True
    # Option-dependent properties: ({"when": {option: [values]}, "then": {property: bool}}, ...); see step 3.
    property_rules: ClassVar[Tuple[Dict[str, Any], ...]] = ()
    lr_groups: ClassVar[Tuple[str, ...]] = ()
    wraps_targets: ClassVar[bool] = True  # False for methods that adapt the model otherwise (full, probe)
    trains_backbone: ClassVar[bool] = False  # True only for full fine-tuning
    forces_head: ClassVar[bool] = False  # the head always trains (linear probing)
    model_tasks: ClassVar[Tuple[str, ...]] = ("seq-cls", "img-cls", "causal-lm", "img-gen")  # model tasks it applies to
    # Targets when the spec gives none (None: the model's defaults, attention q/v); SLTrain replaces every layer.
    default_targets: ClassVar[Optional[Tuple[str, ...]]] = None
    # For the conformance suite (tests/test_conformance.py; see "Conformance" in runtime-native/README.md):
    # options applied in every test (to shrink sizes only, never to change the code path),
    test_options: ClassVar[Dict[str, Any]] = {}
    # every option value that changes the forward, the init or the count, as option dicts; each case (and the
    # defaults) runs at every rank of `conformance_ranks` on the built-in models (non-square layers included).
    # Every enum choice, both values of every boolean and a non-zero value of every dropout-like option must
    # appear in a case (or the defaults), unless `option_cases_exempt` names the option with the reason.
    option_cases: ClassVar[Tuple[Dict[str, Any], ...]] = ()
    option_cases_exempt: ClassVar[Dict[str, str]] = {}
    conformance_ranks: ClassVar[Tuple[int, ...]] = (1, 4, 16)
    # Buffers the method's hooks update during training (name suffixes); every other buffer must be unchanged.
    mutable_buffers: ClassVar[Tuple[str, ...]] = ()
    # Option values under which the method cannot learn by design (an official init reproduced on purpose):
    # ({option: value, ...}, reason) pairs; for a case containing them the suite checks the loss does not move.
    non_learning: ClassVar[Tuple[Tuple[Dict[str, Any], str], ...]] = ()
    # The parameter formula checked against numbers worked out by hand from the paper (not by this code):
    # ({"shapes": [(d_out, d_in), ...], "rank": r, "options": {...}, "count": n, "source": "..."}, ...).
    # Methods that wrap targets need at least one, with a non-square shape.
    count_examples: ClassVar[Tuple[Dict[str, Any], ...]] = ()

    def __init__(self, rank: Optional[int] = None, options: Any = None, seed: int = 0):
        if options is None or isinstance(options, dict):
            options = parse_options(self.Options, options)
        if self.needs_rank and (rank is None or rank < 1):
            raise ConfigError(f"method.rank: {self.name} needs a positive rank, got {rank!r}",
                              hint="set method.rank, e.g. 8")
        self.rank = rank if self.needs_rank else None
        self.options = options
        self.seed = seed
        self.targets: List[str] = []  # names of the wrapped modules, filled by adapt()
        # instance attributes shadow the class defaults: the properties under this run's options
        for prop, value in self.properties_for(dataclasses.asdict(options)).items():
            setattr(self, prop, value)

    # -- describe -----------------------------------------------------------------------------------
    @classmethod
    def properties_for(cls, options: Dict[str, Any]) -> Dict[str, bool]:
        """`init_is_identity` and `mergeable` under the given (complete) option values: the class defaults,
        then every matching rule of `property_rules` in order."""
        props = {p: getattr(cls, p) for p in OPTION_PROPERTIES}
        for rule in cls.property_rules:
            if all(options.get(opt) in values for opt, values in rule["when"].items()):
                props.update(rule["then"])
        return props

    @classmethod
    def describe(cls) -> Dict[str, Any]:
        defaults = cls.properties_for(dataclasses.asdict(cls.Options()))
        return {
            "paper": cls.paper,
            "needs_rank": cls.needs_rank,
            "init_is_identity": defaults["init_is_identity"],
            "mergeable": defaults["mergeable"],
            "count_is_exact": defaults["count_is_exact"],
            "property_rules": [{"when": {k: list(v) for k, v in r["when"].items()}, "then": dict(r["then"])}
                               for r in cls.property_rules],
            "lr_groups": list(cls.lr_groups),
            "options": options_schema(cls.Options),
        }

    # -- parameter formula --------------------------------------------------------------------------
    def layer_count(self, d_out: int, d_in: int) -> int:
        """Trainable parameters added for one adapted (d_out, d_in) layer."""
        raise NotImplementedError

    def shared_count(self, shapes: Sequence[Shape]) -> int:
        """Trainable parameters shared by all layers (in `create_shared`)."""
        return 0

    def count(self, shapes: Sequence[Shape]) -> int:
        """The method's trainable-parameter formula over the (d_out, d_in) shapes of its targets."""
        return sum(self.layer_count(o, i) for o, i in shapes) + self.shared_count(shapes)

    def final_count(self, shapes: Sequence[Shape]) -> Optional[int]:
        """For methods whose trainable count changes during training (rank growth, pruning, selection): the
        count of the final pattern, by formula (what budget matching compares); None: the same as `count`."""
        return None

    def formula(self, model: nn.Module, shapes: Sequence[Shape], ctx: AdaptContext) -> int:
        """Trainable parameters of the whole adapted model, by formula (excluding the task head)."""
        return self.count(shapes)

    # -- randomness ---------------------------------------------------------------------------------
    def generator(self, offset: int = 0) -> torch.Generator:
        """A CPU generator for fixed random bases: same numbers on every device and after a resume.
        Seeded from the method's `seed` option when it has one (as PEFT's `projection_prng_key`), else
        from the run seed."""
        base_seed = getattr(self.options, "seed", None)
        if base_seed is None:
            base_seed = self.seed
        g = torch.Generator(device="cpu")
        g.manual_seed(int(base_seed) * 1_000_003 + offset)
        return g

    # -- wrapping -----------------------------------------------------------------------------------
    def create_shared(self, shapes: Sequence[Shape], device: torch.device, dtype: torch.dtype) -> Optional[nn.Module]:
        """Per-model state shared by every adapted layer (built once, from all target shapes)."""
        return None

    def wrap(self, name: str, base: nn.Linear, shared: Optional[nn.Module]) -> nn.Module:
        """Return the module that replaces the target `base` (usually an AdaptedLinear subclass)."""
        raise NotImplementedError

    def adapt(self, model: nn.Module, targets: Sequence[str], ctx: AdaptContext) -> List[Shape]:
        """Freeze the model and wrap the target linear layers; returns their shapes. The head is handled
        by `adapt_model`."""
        for p in model.parameters():
            p.requires_grad_(False)
        found = find_targets(model, targets, exclude=ctx.head_name)
        if not found:
            raise ConfigError(
                f"method.targets: no nn.Linear module matches {list(targets)}",
                hint=f"available linear layers: {', '.join(sorted(_leaf_linear_names(model, ctx.head_name)))}")
        shapes = [(m.out_features, m.in_features) for _, m in found]
        w = found[0][1].weight
        shared = self.create_shared(shapes, w.device, w.dtype)
        if shared is not None:
            model.add_module(SHARED_ATTR, shared)
        for name, module in found:
            _set_submodule(model, name, self.wrap(name, module, shared))
        self.targets = [n for n, _ in found]
        return shapes

    # -- training hooks -----------------------------------------------------------------------------
    def on_train_start(self, ctx: TrainContext) -> None:
        pass

    def before_forward(self, ctx: TrainContext) -> None:
        pass

    def extra_loss(self, ctx: TrainContext) -> Optional[torch.Tensor]:
        return None

    def after_backward(self, ctx: TrainContext) -> None:
        pass

    def after_optimizer_step(self, ctx: TrainContext) -> None:
        pass

    def after_step(self, ctx: TrainContext) -> None:
        pass

    # -- allocation (methods that move rank during training) ----------------------------------------
    def allocation(self, model: nn.Module) -> Optional[Dict[str, Any]]:
        """Where the method's capacity sits now, for methods that decide it during training: None (the
        default) or `{"ranks": {module name: int}, "budget": int or None, "params": int or None, "unit": "rank"}`
        (`params`: parameters the current pattern uses, e.g. AdaLoRA's unmasked triplets). The loop emits an
        `allocation` event when it changes (checked every `log_every` steps), at the start and at the end;
        the final pattern is stored in the result record."""
        return None

    # -- parameter groups ---------------------------------------------------------------------------
    def group_of(self, param_name: str) -> str:
        """Name of the parameter group of a trainable parameter: "default" or one of `lr_groups`."""
        return "default"

    def optimizer_settings(self, optimizer: str) -> Dict[str, Any]:
        """Constructor arguments of the run's optimizer (`adamw` / `sgd`) that the method sets, replacing the
        runtime's defaults (AdamW betas (0.9, 0.999), eps 1e-8; SGD momentum 0.9), e.g. LoRA-MGPO's μ as β1.
        They are part of the optimizer the checkpoint records, so a resume rebuilds the same one."""
        return {}

    def decays(self, param_name: str, param: torch.Tensor) -> bool:
        """Whether `training.weight_decay` applies to a trainable parameter (default: tensors with ≥ 2 dims)."""
        return param.ndim >= 2

    # -- inputs -------------------------------------------------------------------------------------
    def reserved_positions(self) -> int:
        """Sequence positions the method adds in front of every input (soft prompts): the data's max_length
        is lowered (or checked) so that inputs plus these positions fit the model."""
        return 0

    # -- checkpoint state ---------------------------------------------------------------------------
    def extra_state(self) -> Dict[str, Any]:
        """Small JSON-able state the hooks maintain (saved in the checkpoint manifest)."""
        return {}

    def load_extra_state(self, state: Dict[str, Any]) -> None:
        pass

    def prepare_load(self, model: nn.Module, state: Dict[str, torch.Tensor]) -> None:
        """Called before loading adapter tensors; resize modules here if shapes change during training."""
        pass

    # -- merge --------------------------------------------------------------------------------------
    def merge(self, model: nn.Module) -> None:
        if not self.mergeable:
            raise ConfigError(f"method {self.name} cannot be merged into the base weights")
        for m in adapted_layers(model):
            m.merge()

    def unmerge(self, model: nn.Module) -> None:
        for m in adapted_layers(model):
            m.unmerge()


# --------------------------------------------------------------------------------------------------
# Model-level helpers used by the runtime and the tests
# --------------------------------------------------------------------------------------------------


def matches_target(name: str, pattern: str) -> bool:
    """A target pattern matches a module name exactly, as a dotted suffix (`q_proj` matches
    `layers.0.attn.q_proj`), or as a glob over the full name (`layers.*.attn.q_proj`)."""
    if name == pattern or name.endswith("." + pattern):
        return True
    return any(c in pattern for c in "*?[") and (fnmatch.fnmatchcase(name, pattern)
                                                   or fnmatch.fnmatchcase(name, "*." + pattern))


def _under(name: str, prefix: Optional[str]) -> bool:
    return bool(prefix) and (name == prefix or name.startswith(prefix + "."))


def _leaf_linear_names(model: nn.Module, exclude: Optional[str]) -> List[str]:
    return sorted({n.split(".")[-1] for n, m in model.named_modules()
                   if isinstance(m, nn.Linear) and not _under(n, exclude)})


def find_targets(model: nn.Module, patterns: Sequence[str], exclude: Optional[str] = None) -> List[Tuple[str, nn.Linear]]:
    out = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            if _under(name, exclude) or _under(name, SHARED_ATTR):
                continue
            if any(matches_target(name, p) for p in patterns):
                out.append((name, module))
    return out


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, leaf, new)


def adapted_layers(model: nn.Module) -> List[AdaptedLinear]:
    return [m for m in model.modules() if isinstance(m, AdaptedLinear)]


def adapt_model(model: nn.Module, method: Method, targets: Sequence[str], head_name: Optional[str],
                train_head: bool, **facts: Any) -> Tuple[List[Shape], int]:
    """Apply `method` to `model` in place. Returns (target shapes, formula count including the head).
    `facts` fill the other fields of `AdaptContext` (task, max_length, ...)."""
    ctx = AdaptContext(head_name=head_name, train_head=train_head or method.forces_head, **facts)
    if ctx.task is not None and ctx.task not in method.model_tasks:
        raise ConfigError(f"method.name: {method.name} does not apply to {ctx.task} models",
                          hint=f"use it on a {' or '.join(method.model_tasks)} model")
    shapes = method.adapt(model, list(targets), ctx)
    formula = method.formula(model, shapes, ctx)
    if ctx.train_head and head_name and not method.trains_backbone:
        untie_head(model, head_name)
        head = model.get_submodule(head_name)
        for p in head.parameters():
            if not p.requires_grad:
                p.requires_grad_(True)
                formula += p.numel()
    return shapes, formula


def untie_head(model: nn.Module, head_name: str) -> List[str]:
    """Give the head its own copy of every parameter it shares with the rest of the model (tied input/output
    embeddings), so that training the head leaves the backbone's features unchanged, as PEFT's
    `modules_to_save` copy does. Returns the untied parameter names (under the head)."""
    head = model.get_submodule(head_name)
    outside = {id(p) for n, p in model.named_parameters(remove_duplicate=False) if not _under(n, head_name)}
    untied = []
    for mod_name, mod in head.named_modules():
        for p_name, p in list(mod.named_parameters(recurse=False)):
            if id(p) in outside:
                setattr(mod, p_name, nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad))
                untied.append(f"{mod_name + '.' if mod_name else ''}{p_name}")
    config = getattr(model, "config", None)
    if untied and config is not None and getattr(config, "tie_word_embeddings", False):
        config.tie_word_embeddings = False  # a later tie_weights() must not tie them again
    return untied


def trainable_numel(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def head_numel(model: nn.Module, head_name: Optional[str]) -> Optional[int]:
    """Trainable parameters under the task head (`head_name`), adapters inside it included; 0 for a frozen head,
    None for a model without one. Papers (LoRA and its successors) report adapter counts without it; PEFT's
    benchmarks with it: tables subtract it or not (`rankflow table --params`)."""
    if not head_name:
        return None
    try:
        head = model.get_submodule(head_name)
    except AttributeError:
        return None
    return sum(p.numel() for p in head.parameters() if p.requires_grad)


def total_numel(model: nn.Module) -> int:
    """Parameters of the adapted model, counting each tensor once (shared modules once)."""
    return sum(p.numel() for p in model.parameters())


def _adapter_prefixes(model: nn.Module) -> List[str]:
    prefixes = [n + "." for n, m in model.named_modules() if isinstance(m, AdaptedLinear)]
    if hasattr(model, SHARED_ATTR):
        prefixes.append(SHARED_ATTR + ".")
    return prefixes


def adapter_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """What a checkpoint stores of the model: every trainable parameter plus the persistent buffers of the
    adapter modules (never the frozen backbone)."""
    out: Dict[str, torch.Tensor] = {}
    for n, p in model.named_parameters():
        if p.requires_grad:
            out[n] = p.detach()
    prefixes = _adapter_prefixes(model)
    for n, b in model.state_dict(keep_vars=True).items():
        if n in out or ".base." in n:
            continue
        if any(n.startswith(pre) for pre in prefixes):
            out[n] = b.detach()
    return out


def load_adapter_state_dict(model: nn.Module, state: Dict[str, torch.Tensor]) -> None:
    """Copy a checkpoint's adapter tensors into the model; names and shapes must match exactly."""
    want = adapter_state_dict(model)
    missing = sorted(set(want) - set(state))
    extra = sorted(set(state) - set(want))
    if missing or extra:
        raise ConfigError(
            f"checkpoint does not match the model: missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {extra[:3]}{'...' if len(extra) > 3 else ''}",
            hint="resume with the same method, targets and model as the run that wrote the checkpoint")
    with torch.no_grad():
        for n, t in want.items():
            src = state[n]
            if tuple(src.shape) != tuple(t.shape):
                raise ConfigError(f"checkpoint tensor {n} has shape {tuple(src.shape)}, the model expects {tuple(t.shape)}",
                                  hint="resume with the same method options and rank as the run that wrote the checkpoint")
            t.copy_(src.to(device=t.device, dtype=t.dtype))
