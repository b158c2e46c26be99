"""Weight moves made by diffusers' offload mechanisms, reported as transfer records.

Each mechanism moves weights at a different place, and each place is observed on the
instance, never by patching a class:

- model offload (accelerate ``CpuOffload``) and any ``pipe.to()``: whole components move
  through ``component.to(device)``; a wrapper on each component's ``to`` reports the moves
  that change the device (one transfer span each).
- group offloading: ``ModuleGroup.onload_`` / ``offload_`` of every group found in the
  components' hook registries; with ``use_stream`` the marks are recorded on the copy stream.
- sequential offload: accelerate's per-module ``AlignDevicesHook.pre_forward`` loads weights.

Group and sequential moves happen hundreds of times a step; they are opened mergeable, so the
generation folds them into one span per component, direction and parent.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import torch

from wan_otel.pipeline.instrumentation.generation import OpenRecord
from wan_otel.pipeline.instrumentation.guard import Guard
from wan_otel.pipeline.instrumentation.wrappers import MethodPatch, patch_method

TO_DEVICE = "to_device"
"""``wan.offload.direction`` of an onload (host to accelerator)."""

TO_HOST = "to_host"
"""``wan.offload.direction`` of an offload (accelerator to host)."""

_GROUP_HOOK_NAMES = ("group_offloading",)


class TransferSink(Protocol):
    def transfer_start(
        self, component: str, direction: str, nbytes: int, stream: Any, merge: bool
    ) -> OpenRecord | None: ...


def _close(opened: OpenRecord | None, error: BaseException | None, stream: Any) -> None:
    if opened is not None:
        opened.close(error, stream)


def tensor_bytes(tensors: Any) -> int:
    return sum(int(t.numel()) * t.element_size() for t in tensors)


def module_bytes(module: torch.nn.Module) -> int:
    """Static weight bytes: parameters plus buffers (valid on the meta device too)."""
    return tensor_bytes(itertools.chain(module.parameters(), module.buffers()))


def _device_of(module: torch.nn.Module) -> torch.device | None:
    first = next(itertools.chain(module.parameters(), module.buffers()), None)
    return None if first is None else first.device


def _target_device(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> torch.device | None:
    """The device of a ``Module.to(...)`` call, if it names one."""
    for value in (*args[:1], kwargs.get("device")):
        if isinstance(value, torch.device):
            return value
        if isinstance(value, str):
            try:
                return torch.device(value)
            except (RuntimeError, ValueError):
                return None
        if isinstance(value, int) and not isinstance(value, bool):
            return torch.device("cuda", value)
        if isinstance(value, torch.Tensor):
            return value.device
    return None


def _moves(current: torch.device, target: torch.device) -> bool:
    if current.type != target.type:
        return True
    if current.type == "cpu":
        return False
    return target.index is not None and current.index is not None and target.index != current.index


class OffloadObserver:
    """Wraps the move entry points of a pipeline's components; ``restore`` undoes it all."""

    def __init__(self, sink: TransferSink, guard: Guard) -> None:
        self._sink = sink
        self._guard = guard
        self._patches: dict[tuple[int, str], MethodPatch] = {}  # (id(object), method) -> patch
        self._module_to: dict[str, MethodPatch] = {}
        self._discovered: dict[str, tuple[Any, ...]] = {}  # name -> hooks_fingerprint walked

    def sync(self, components: Mapping[str, torch.nn.Module]) -> None:
        """Wrap what is new since the last call: components swapped in, offload enabled."""
        for name, patch in list(self._module_to.items()):
            if components.get(name) is not patch.obj:
                patch.restore()
                del self._module_to[name]
        discovered = {}
        for name, module in components.items():
            if name not in self._module_to:
                self._module_to[name] = patch_method(module, "to", self._wrap_to(name, module))
            # Walking every submodule costs milliseconds at the start of each call (1,617
            # modules in TI2V-5B): walk again only when the component's top hooks changed.
            discovered[name] = fingerprint = hooks_fingerprint(module)
            if self._discovered.get(name) != fingerprint:
                self._discover(name, module)
        self._discovered = discovered

    @property
    def fingerprints(self) -> Mapping[str, tuple[Any, ...]]:
        """Each component's ``hooks_fingerprint`` as of the last ``sync``."""
        return self._discovered

    def restore(self) -> None:
        for patch in (*self._module_to.values(), *self._patches.values()):
            patch.restore()
        self._module_to.clear()
        self._patches.clear()
        self._discovered.clear()

    # -- model offload and pipe.to ----------------------------------------------------------

    def _wrap_to(self, name: str, module: torch.nn.Module) -> Callable[..., Any]:
        guard = self._guard

        def make(original: Callable[..., Any]) -> Callable[..., Any]:
            def to(*args: Any, **kwargs: Any) -> Any:
                return guard.around(
                    lambda: self._to_start(name, module, args, kwargs),
                    lambda opened, error: _close(opened, error, None),
                    lambda: original(*args, **kwargs),
                )

            return to

        return make

    def _to_start(
        self, name: str, module: torch.nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> OpenRecord | None:
        target = _target_device(args, kwargs)
        current = _device_of(module)
        if target is None or current is None or not _moves(current, target):
            return None
        direction = TO_HOST if target.type == "cpu" else TO_DEVICE
        return self._sink.transfer_start(name, direction, module_bytes(module), None, False)

    # -- group and sequential offload -------------------------------------------------------

    def _discover(self, name: str, root: torch.nn.Module) -> None:
        for module in root.modules():
            registry = vars(module).get("_diffusers_hook")
            if registry is not None:
                for hook_name in _GROUP_HOOK_NAMES:
                    group = getattr(registry.get_hook(hook_name), "group", None)
                    if group is not None:
                        self._wrap_group(name, group)
            hf_hook = vars(module).get("_hf_hook")
            if hf_hook is not None:
                for hook in getattr(hf_hook, "hooks", None) or (hf_hook,):
                    if getattr(hook, "offload", False) is True and hasattr(hook, "pre_forward"):
                        self._wrap_leaf_hook(name, module, hook)

    def _wrap_group(self, name: str, group: Any) -> None:
        if (id(group), "onload_") in self._patches or not hasattr(group, "onload_"):
            return
        nbytes = tensor_bytes(
            itertools.chain(
                (t for m in getattr(group, "modules", []) for t in m.parameters()),
                (t for m in getattr(group, "modules", []) for t in m.buffers()),
                getattr(group, "parameters", []),
                getattr(group, "buffers", []),
            )
        )
        stream = getattr(group, "stream", None)
        self._patches[(id(group), "onload_")] = patch_method(
            group, "onload_", self._wrap_move(name, TO_DEVICE, nbytes, stream)
        )
        if hasattr(group, "offload_"):
            self._patches[(id(group), "offload_")] = patch_method(
                group, "offload_", self._wrap_move(name, TO_HOST, nbytes, None)
            )

    def _wrap_leaf_hook(self, name: str, module: torch.nn.Module, hook: Any) -> None:
        if (id(hook), "pre_forward") in self._patches:
            return
        nbytes = tensor_bytes(
            itertools.chain(module.parameters(recurse=False), module.buffers(recurse=False))
        )
        self._patches[(id(hook), "pre_forward")] = patch_method(
            hook, "pre_forward", self._wrap_move(name, TO_DEVICE, nbytes, None)
        )

    def _wrap_move(
        self, name: str, direction: str, nbytes: int, stream: Any
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        sink, guard = self._sink, self._guard

        def make(original: Callable[..., Any]) -> Callable[..., Any]:
            def move(*args: Any, **kwargs: Any) -> Any:
                return guard.around(
                    lambda: sink.transfer_start(name, direction, nbytes, stream, True),
                    lambda opened, error: _close(opened, error, stream),
                    lambda: original(*args, **kwargs),
                )

            return move

        return make


def hooks_fingerprint(module: torch.nn.Module) -> tuple[Any, ...]:
    """What enabling, removing or re-applying an offload mechanism changes near a component's
    top: the diffusers hooks registered on the top module and its children (group offloading
    hooks the top module, or for a VAE its encoder and decoder) and accelerate's hook
    (sequential and model offload). The hook objects themselves, so that offload torn down and
    built again (diffusers does it around LoRA loading) is seen; only model offload's
    ``CpuOffload`` by its kind, since accelerate re-creates it after every call. Objects, not
    ids: a freed hook's address is soon reused by its replacement."""
    return tuple(_module_hooks(m) for m in (module, *module.children()))


def _module_hooks(module: torch.nn.Module) -> tuple[Any, ...]:
    state = vars(module)
    registry = state.get("_diffusers_hook")
    hooks = tuple((getattr(registry, "hooks", None) or {}).items()) if registry is not None else ()
    accelerate = state.get("_hf_hook")
    if accelerate is None or type(accelerate).__name__ == "CpuOffload":
        accelerate = type(accelerate)
    return module, hooks, accelerate


def detect_offload_mode(pipe: Any, components: Mapping[str, torch.nn.Module]) -> str:
    """``group``, ``sequential``, ``model`` or ``none``, from the hooks diffusers installed."""
    for module in components.values():
        for sub in module.modules():
            registry = vars(sub).get("_diffusers_hook")
            if registry is not None and any(registry.get_hook(n) for n in _GROUP_HOOK_NAMES):
                return "group"
            hf_hook = vars(sub).get("_hf_hook")
            hooks = getattr(hf_hook, "hooks", None) or ((hf_hook,) if hf_hook is not None else ())
            if any(getattr(h, "offload", False) is True for h in hooks):
                return "sequential"
    if getattr(pipe, "_all_hooks", None):
        return "model"
    return "none"
