//! PyTorch's `state_dict` order recovered from names (a safetensors file does not keep it).

use std::cmp::Ordering;

/// A run of a name component: digits compare as numbers, the rest as text.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Run<'a> {
    /// Digits without leading zeros: longer is larger, then by text.
    Number(usize, &'a str),
    Text(&'a str),
}

/// The runs of one component, e.g. `conv12` -> `conv`, `12`.
fn runs(component: &str) -> Vec<Run<'_>> {
    let mut out = Vec::new();
    let mut rest = component;
    while let Some(c) = rest.chars().next() {
        let digit = c.is_ascii_digit();
        let end = rest.find(|ch: char| ch.is_ascii_digit() != digit).unwrap_or(rest.len());
        let (run, tail) = rest.split_at(end);
        out.push(if digit {
            let n = run.trim_start_matches('0');
            Run::Number(n.len(), n)
        } else {
            Run::Text(run)
        });
        rest = tail;
    }
    out
}

/// Where a parameter comes within its module: PyTorch's registration order of convolutions,
/// linear layers and batch norms, anything else after.
fn leaf_rank(leaf: &str) -> usize {
    ["weight", "bias", "running_mean", "running_var"].iter().position(|&l| l == leaf).unwrap_or(4)
}

/// Compares two tensor names in PyTorch's module order (see [`super::Match::ByOrder`]).
pub(super) fn torch_order(a: &str, b: &str) -> Ordering {
    let ((ma, la), (mb, lb)) = (split(a), split(b));
    module_key(ma).cmp(&module_key(mb)).then(leaf_rank(la).cmp(&leaf_rank(lb))).then(a.cmp(b))
}

/// A name's module path and its last component.
fn split(name: &str) -> (&str, &str) {
    name.rsplit_once('.').unwrap_or(("", name))
}

/// The runs of every component of a module path (none for the top level).
fn module_key(module: &str) -> Vec<Vec<Run<'_>>> {
    if module.is_empty() {
        Vec::new()
    } else {
        module.split('.').map(runs).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_in_natural_order_then_pytorch_registration_order() {
        let mut names = vec![
            "layers.10.weight",
            "fc1.bias",
            "layers.2.running_var",
            "conv2.weight",
            "layers.2.weight",
            "conv10.weight",
            "layers.2.extra",
            "layers.2.bias",
            "conv1.weight",
            "layers.02.running_mean",
            "scale",
            "layers.2.a.weight",
        ];
        names.sort_by(|a, b| torch_order(a, b));
        assert_eq!(
            names,
            [
                "scale",
                "conv1.weight",
                "conv2.weight",
                "conv10.weight",
                "fc1.bias",
                "layers.2.weight",
                "layers.2.bias",
                "layers.02.running_mean",
                "layers.2.running_var",
                "layers.2.extra",
                "layers.2.a.weight",
                "layers.10.weight",
            ]
        );
    }
}
