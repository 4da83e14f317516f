"""Exercises with instant feedback: checkers for the functions students write in the notebooks.

One module per chapter (:mod:`.primer`, :mod:`.lipschitz`, :mod:`.naive_defenses`,
:mod:`.adversarial_training`, :mod:`.regularization`, :mod:`.smoothing`); each ``check_*``
function takes the student's function, runs it on prepared inputs and compares it with the
reference implementation of ``course_lib``, property by property. It prints ``✓ ...`` with the
properties that hold, or raises :class:`ExerciseFailed` whose message names the property that
failed, the input it failed on, what was expected and what came back, and, where the answer
matches a typical mistake, what that mistake is. Exceptions raised by the student's code are
caught and named the same way. In a notebook the message is shown without a traceback.

``python -m course_lib.exercises.student OUTDIR`` writes the students' copies of the notebooks
(solutions replaced by stubs), see :mod:`.student`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch


class ExerciseFailed(AssertionError):
    """A property of the student's function failed; the message says which, where and why."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of a traceback: the diagnosis is the whole message.
        return [f"✗ {self}"]


class Checker:
    """The bookkeeping of one check: the exercise's name and the properties verified so far."""

    def __init__(self, exercise: str):
        self.exercise = exercise
        self.passed: list[str] = []

    def call(self, fn: Callable, *args, on: str):
        """Run the student's ``fn(*args)``; an exception becomes a diagnosis naming it."""
        try:
            return fn(*args)
        except NotImplementedError:
            raise ExerciseFailed(
                f"{self.exercise}: not implemented yet (your function raised NotImplementedError "
                f"on {on}). Replace `raise NotImplementedError` with your code."
            ) from None
        except Exception as e:  # the student's bug, whatever it is
            raise ExerciseFailed(
                f"{self.exercise}: your function raised {type(e).__name__}: {e} -- on {on}."
            ) from None

    def expect(
        self,
        condition: bool,
        prop: str,
        on: str,
        expected: str,
        got: str,
        hint: str | None = None,
    ) -> None:
        """Record ``prop`` as holding, or raise the diagnosis of its failure."""
        if bool(condition):
            if prop not in self.passed:
                self.passed.append(prop)
            return
        message = (
            f"{self.exercise}: property '{prop}' fails on {on}: expected {expected}, got {got}."
        )
        raise ExerciseFailed(message + (f" Hint: {hint}" if hint else ""))

    def agrees(self, got: torch.Tensor, reference: torch.Tensor, prop: str, on: str) -> None:
        """:meth:`expect` that ``got`` equals ``reference`` ``(B, ...)``; a failure shows the
        sample that differs most."""
        diff = (got - reference).abs()
        i = int((diff.flatten(1).amax(1) if got.ndim > 1 else diff).argmax())
        where = f"{on}, sample {i}"
        self.expect(close(got, reference), prop, where, show(reference[i]), show(got[i]))

    def mistake(self, got, reference, mistakes: dict[str, object], on: str, expected: str) -> None:
        """Raise the diagnosis of a typical mistake if ``got`` is not the ``reference`` but equals
        one of ``mistakes``' outputs (``{description: what that mistake returns}``); a mistake
        that gives the reference's answer on this input is no mistake here."""
        if close(got, reference):
            return
        for description, wrong in mistakes.items():
            if close(got, wrong) and not close(wrong, reference):
                raise ExerciseFailed(
                    f"{self.exercise}: property 'agrees with the reference' fails on {on}: "
                    f"expected {expected}; {_first_difference(got, reference)}. It matches a "
                    f"typical mistake: {description}"
                )

    def done(self) -> None:
        """Print the verdict: every property checked holds."""
        print(f"✓ {self.exercise}: all {len(self.passed)} properties hold")
        for prop in self.passed:
            print(f"    ✓ {prop}")


def _first_difference(got, reference) -> str:
    """Where ``got`` and ``reference`` differ most: the whole value, or the worst sample."""
    got_t = torch.as_tensor(got, dtype=torch.float64)
    ref_t = torch.as_tensor(reference, dtype=torch.float64)
    if got_t.ndim == 0 or got_t.shape != ref_t.shape:
        return f"got {show(got)} instead of {show(reference)}"
    diff = (got_t - ref_t).abs().nan_to_num(math.inf)
    i = int((diff.flatten(1).amax(1) if diff.ndim > 1 else diff).argmax())
    return f"on sample {i} got {show(got_t[i])} instead of {show(ref_t[i])}"


def as_tensor(value, exercise: str, what: str, on: str) -> torch.Tensor:
    """The student's return value as a float64 tensor, or a diagnosis of what it is instead."""
    if isinstance(value, torch.Tensor):
        return value.detach().double().cpu()
    try:
        return torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ExerciseFailed(
            f"{exercise}: property 'returns {what}' fails on {on}: expected {what}, "
            f"got {type(value).__name__} {short_repr(value)}."
        ) from None


def short_repr(value, limit: int = 80) -> str:
    """``repr(value)`` on one line, cut at ``limit`` characters."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def close(a, b, rtol: float = 1e-4, atol: float = 1e-6) -> bool:
    """Same shape and values (NaN never equals anything)."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=rtol, atol=atol))


def show(value, digits: int = 4) -> str:
    """A short printable form of a number, a tuple or a small tensor."""
    if isinstance(value, torch.Tensor):
        flat = value.detach().flatten().tolist()
        body = ", ".join(f"{v:.{digits}g}" for v in flat[:6]) + (", ..." if len(flat) > 6 else "")
        return f"[{body}] (shape {tuple(value.shape)})" if value.ndim else f"{flat[0]:.{digits}g}"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}g}"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "(" + ", ".join(show(v, digits) for v in value) + ")"
    return repr(value)


def tiny_model(in_shape: tuple[int, ...], hidden: Sequence[int], classes: int, seed: int):
    """A fixed random ``Flatten -> (Linear, Tanh)* -> Linear`` net for the checkers (smooth, so
    every input has an informative gradient), in eval mode."""
    d = math.prod(in_shape)
    sizes = [d, *hidden]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers: list[torch.nn.Module] = [torch.nn.Flatten()]
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [torch.nn.Linear(a, b), torch.nn.Tanh()]
        layers.append(torch.nn.Linear(sizes[-1], classes))
        model = torch.nn.Sequential(*layers)
    return model.eval()


__all__ = ["Checker", "ExerciseFailed", "as_tensor", "close", "short_repr", "show", "tiny_model"]
