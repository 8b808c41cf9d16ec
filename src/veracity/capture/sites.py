"""Site names, one way everywhere: `resid.{L}`, `resid.embed`, `heads.{L}`, `mlp.{L}`.

`resid.L` is the output of decoder layer L (before any final norm; note that HF's
`output_hidden_states[-1]` is *after* the final norm, so it differs for the last layer),
`resid.embed` the input of layer 0 (= `hidden_states[0]`), `heads.L` the o_proj input reshaped to
[heads, head_dim], `mlp.L` the MLP output. A bare kind (`resid`, `heads`, `mlp`) means every layer;
negative L counts from the end.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..models.arch import ArchSpec

KINDS = ("resid", "heads", "mlp")


@dataclass(frozen=True, order=True)
class Site:
    """One capture point: a site kind ("resid", "heads", "mlp") at one layer; sites sort by kind, then layer."""
    kind: str
    layer: int  # -1 for resid.embed (it runs before layer 0)

    @property
    def name(self) -> str:
        """The site's name in a store and on the command line: "resid.12", "heads.3", or "resid.embed" for the
        embeddings."""
        return "resid.embed" if self.layer == -1 else f"{self.kind}.{self.layer}"

    def shape(self, arch: ArchSpec) -> tuple[int, ...]:
        """The per-row shape of this site's activations for `arch`: [n_heads, head_dim] for heads, [hidden_size]
        otherwise."""
        if self.kind == "heads":
            return (arch.n_heads, arch.head_dim)
        return (arch.hidden_size,)


def parse_sites(spec: str | list[str] | tuple[str, ...], arch: ArchSpec) -> list[Site]:
    """Parse "heads,resid.-1,mlp.3" (or a list) into sorted, de-duplicated `Site`s."""
    parts = [p.strip() for p in (spec.split(",") if isinstance(spec, str) else spec) if p and p.strip()]
    if not parts:
        raise ValueError("no sites given; use e.g. 'resid', 'heads.-1' or 'resid.embed,mlp.3'")
    out: set[Site] = set()
    for p in parts:
        kind, _, layer = p.partition(".")
        if kind not in KINDS:
            raise ValueError(f"unknown site {p!r}: kinds are {', '.join(KINDS)} (e.g. resid.12, heads.-1, resid.embed)")
        if layer == "":
            out.update(Site(kind, i) for i in range(arch.n_layers))
        elif layer == "embed":
            if kind != "resid":
                raise ValueError(f"unknown site {p!r}: only resid has an embed site")
            out.add(Site("resid", -1))
        else:
            try:
                i = int(layer)
            except ValueError:
                raise ValueError(f"bad layer in site {p!r}: expected an integer or 'embed'") from None
            out.add(Site(kind, arch.resolve_layer(i)))
    return sorted(out, key=lambda s: (KINDS.index(s.kind), s.layer))


def resolve_site_name(name: str, n_layers: int) -> str:
    """Canonical name for a site string, resolving negative layers ("resid.-1" -> "resid.29")."""
    kind, _, layer = name.partition(".")
    if layer and layer != "embed" and layer.lstrip("-").isdigit():
        i = int(layer)
        if i < 0:
            i += n_layers
        if not 0 <= i < n_layers:
            raise KeyError(f"site {name!r} out of range for {n_layers} layers")
        return f"{kind}.{i}"
    return name
