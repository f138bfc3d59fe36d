"""``gradcheck explain``: one example's forward values and backward pass, layer by layer."""

from __future__ import annotations

import sys

import click

from .io import make_console
from .options import output_options


class Terms(click.ParamType):
    """``--terms``: a positive integer, or ``all`` (None: no limit)."""

    name = "terms"

    def convert(self, value, param, ctx):  # noqa: ANN001 - click's signature
        if value is None or isinstance(value, int):
            return value
        if str(value).strip().lower() == "all":
            return None
        try:
            number = int(str(value).strip())
        except ValueError:
            number = 0
        if number < 1:
            self.fail(f"{value!r} is neither 'all' nor a positive integer", param, ctx)
        return number


TERMS = Terms()
#: --terms' default: engine/sums.py's MAX_SUMS (not imported here: the command line
#: loads the engine only when a command runs)
DEFAULT_TERMS = 16


@click.command("explain")
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--example",
    "-e",
    metavar="K",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Which example of a batched config to explain (0-based).",
)
@click.option(
    "--precision",
    metavar="N",
    type=click.IntRange(min=1, max=15),
    default=4,
    show_default=True,
    help="Decimals of the printed numbers.",
)
@click.option(
    "--terms",
    metavar="N|all",
    type=TERMS,
    default=str(DEFAULT_TERMS),
    show_default=True,
    help="Write sums out term by term for tensors of up to N entries (and up to N nonzero "
    "terms per sum); 'all' for every one.",
)
@click.option(
    "--entry",
    "entries",
    metavar="TENSOR[INDEX]",
    multiple=True,
    help="Write out this entry (or slice) term by term, whatever its tensor's size: "
    "conv1.weight[0,0,1,1], input[2, :], pool1.delta[0]. Repeatable.",
)
@click.option(
    "--lr",
    metavar="RATE",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Also show one gradient-descent step, w - RATE * dE/dw, for every parameter.",
)
@output_options
def command(
    config: str,
    example: int,
    precision: int,
    terms: int | None,
    entries: tuple[str, ...],
    lr: float | None,
    no_color: bool,
) -> None:
    """Tell the backward pass of CONFIG layer by layer, as the worked examples do.

    For every layer: its forward output and its delta (dE/d of its output). The loss's
    delta comes by its own rule (softmax cross-entropy: p - y). Max pooling shows which
    input each window routed its gradient to; a convolution shows how its kernel, bias
    and input gradients add up, term by term, and its input gradient also as the full
    convolution of the delta with the 180-degree-rotated kernel; a dense layer shows
    grad(P_j) = sum_i grad(FC_i) f'(z_i) W_ij for its inputs. Sums are written out for
    tensors of up to 16 entries (--terms) or the ones named (--entry); tensors of up to
    64 elements print in full, larger ones as statistics. A batched config explains one
    example (the first unless --example says otherwise).

    Explaining checks nothing: the exit code is 0 unless the config is invalid (2) or a
    value is NaN/Inf (3).

    \b
    Examples:
      gradcheck explain configs/example_b_network.yaml
      gradcheck explain net.yaml --example 2 --precision 6
      gradcheck explain net.yaml --terms all --lr 0.1
      gradcheck explain net.yaml --entry conv1.weight[0,0,1,1] --entry input[2,:]
      gradcheck explain net.yaml --no-color | less
    """
    from ..config import load_problem
    from ..engine.explain import BadEntry, explain, listing_for, missing_entries
    from ..errors import UsageError
    from ..render.explain import render_explanation

    problem = load_problem(config)
    if example >= problem.batch_size:
        what = (
            f"the batch has {problem.batch_size} examples (0 to {problem.batch_size - 1})"
            if problem.batched
            else "the config is not batched: its only example is 0"
        )
        raise UsageError(f"--example {example}: {what}")
    try:
        listing = listing_for(problem, terms, list(entries))
    except BadEntry as err:
        raise UsageError(str(err)) from None
    explanation = explain(problem, example, listing, lr)
    missing = missing_entries(explanation, listing)
    if missing:
        raise UsageError("\n".join(missing))
    console = make_console(sys.stdout, no_color=no_color)
    console.print(render_explanation(explanation, precision))
