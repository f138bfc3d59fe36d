"""``gradcheck explain``: one example's forward values and backward pass, layer by layer."""

from __future__ import annotations

import sys

import click

from .io import make_console
from .options import output_options


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
@output_options
def command(config: str, example: int, precision: int, no_color: bool) -> None:
    """Tell the backward pass of CONFIG layer by layer, as the worked examples do.

    For every layer: its forward output and its delta (dE/d of its output). Max pooling
    shows which input each window routed its gradient to; a convolution shows how its
    kernel, bias and input gradients add up, term by term for small layers; a dense layer
    shows grad(P_j) = sum_i grad(FC_i) f'(z_i) W_ij for its inputs. Tensors of up to 64
    elements print in full, larger ones as statistics. A batched config explains one
    example (the first unless --example says otherwise).

    Explaining checks nothing: the exit code is 0 unless the config is invalid (2) or a
    value is NaN/Inf (3).

    \b
    Examples:
      gradcheck explain configs/example_b_network.yaml
      gradcheck explain net.yaml --example 2 --precision 6
      gradcheck explain net.yaml --no-color | less
    """
    from ..config import load_problem
    from ..engine.explain import explain
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
    explanation = explain(problem, example)
    console = make_console(sys.stdout, no_color=no_color)
    console.print(render_explanation(explanation, precision))
