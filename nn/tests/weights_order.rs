//! Weights whose names differ from the model's, matched by order and shape
//! ([`Match::ByOrder`]), and the by-name error that suggests it.

use std::path::{Path, PathBuf};

use cryptgpu_nn::graph::Graph;
use cryptgpu_nn::spec::{LayerSpec, ModelSpec};
use cryptgpu_nn::weights::{init_params, load_graph_safetensors, load_graph_safetensors_as, Match, Params};
use cryptgpu_nn::zoo::{lenet, resnet_for, Dataset, Pool};
use safetensors::tensor::{Dtype, TensorView};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cryptgpu-nn-order-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Writes `params` under new names (F32), plus an I64 `num_batches_tracked` for every name in
/// `tracked`, as `safetensors.torch.save_file` does.
fn write_renamed(path: &Path, params: &Params, rename: impl Fn(&str) -> String, tracked: &[String]) {
    let mut bufs: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = params
        .iter()
        .map(|(n, t)| {
            (rename(n), Dtype::F32, t.shape.clone(), t.data.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect())
        })
        .collect();
    bufs.extend(tracked.iter().map(|n| (n.clone(), Dtype::I64, vec![], 3i64.to_le_bytes().to_vec())));
    let views: Vec<(String, TensorView)> =
        bufs.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// PyTorch's names of a LeNet written as `conv1`, `conv2`, `fc1`, `fc2`.
fn torch_lenet_name(zoo: &str) -> String {
    let (module, leaf) = zoo.rsplit_once('.').unwrap();
    let module = match module {
        "features.0" => "conv1",
        "features.3" => "conv2",
        "classifier.0" => "fc1",
        "classifier.2" => "fc2",
        other => panic!("unexpected LeNet module {other}"),
    };
    format!("{module}.{leaf}")
}

fn assert_same(loaded: &Params, want: &Params) {
    assert_eq!(loaded.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    for (n, t) in want {
        assert_eq!(loaded[n].shape, t.shape, "{n}");
        assert!(approx::relative_eq!(loaded[n].data[..], t.data[..], max_relative = 1e-6), "{n}");
    }
}

#[test]
fn a_pytorch_named_lenet_loads_by_order_and_by_name_suggests_it() {
    let graph = lenet(Pool::Max).to_graph();
    let p = init_params(&lenet(Pool::Max), 3);
    let path = tmp("torch-lenet.safetensors");
    write_renamed(&path, &p, torch_lenet_name, &[]);
    assert_same(&load_graph_safetensors_as(&path, &graph, Match::ByOrder).unwrap(), &p);
    let err = load_graph_safetensors(&path, &graph).unwrap_err().to_string();
    for needle in [
        "unexpected tensor conv1.weight",
        "missing tensor features.0.weight",
        "load them by order (`--weights-by-order`",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
}

#[test]
fn by_order_mismatches_name_the_first_pair_or_the_counts() {
    let graph = lenet(Pool::Avg).to_graph();
    let p = init_params(&lenet(Pool::Avg), 4);
    let load = |file: &str, p: &Params| {
        let path = tmp(file);
        write_renamed(&path, p, torch_lenet_name, &[]);
        let by_order = load_graph_safetensors_as(&path, &graph, Match::ByOrder).unwrap_err().to_string();
        let by_name = load_graph_safetensors(&path, &graph).unwrap_err().to_string();
        assert!(!by_name.contains("by order"), "no suggestion when by order fails too: {by_name}");
        by_order
    };
    let mut shape = p.clone();
    shape.get_mut("classifier.0.weight").unwrap().shape = vec![400, 1000];
    let err = load("shape.safetensors", &shape);
    assert!(
        err.contains("by order, tensor 4 in order, fc1.weight [400, 1000] in the file, is the model's classifier.0.weight [500, 800]"),
        "{err}"
    );
    let mut last = p.clone();
    last.remove("classifier.2.bias");
    let err = load("count.safetensors", &last);
    assert!(
        err.contains("the file's 7 tensors (num_batches_tracked aside) cannot pair with the model's 8 parameters"),
        "{err}"
    );
    assert!(!err.contains("differs"), "{err}");
    let mut first = p.clone();
    first.remove("features.0.bias");
    let err = load("shifted.safetensors", &first);
    assert!(
        err.contains("7 tensors")
            && err.contains(
                "tensor 1 in order, conv2.weight [50, 20, 5, 5] in the file, is the model's features.0.bias [20]"
            ),
        "{err}"
    );
}

/// Eleven linear layers of distinct shapes, `net.0` to `net.10`.
fn deep_mlp() -> ModelSpec {
    let layers = (0..11).map(|i| LayerSpec::Linear { name: format!("net.{i}"), fin: i + 2, fout: i + 3 }).collect();
    ModelSpec { name: "deep-mlp".into(), input: [1, 1, 2], classes: 13, layers }
}

#[test]
fn modules_pair_in_natural_order() {
    let spec = deep_mlp();
    let p = init_params(&spec, 5);
    // `layers.2*i`: as text, `layers.10` would come before `layers.2` and every shape would differ.
    let rename = |n: &str| {
        let rest = n.strip_prefix("net.").unwrap();
        let (i, leaf) = rest.split_once('.').unwrap();
        format!("layers.{}.{leaf}", 2 * i.parse::<usize>().unwrap())
    };
    let path = tmp("mlp.safetensors");
    write_renamed(&path, &p, rename, &[]);
    assert_same(&load_graph_safetensors_as(&path, &spec.to_graph(), Match::ByOrder).unwrap(), &p);
}

/// A graph's parameters renamed `net.K.leaf`, K counting its modules in order.
fn numbered(graph: &Graph) -> impl Fn(&str) -> String {
    let mut modules: Vec<(String, usize)> = Vec::new();
    for (n, _) in &graph.params {
        let module = n.rsplit_once('.').unwrap().0;
        if modules.last().is_none_or(|(m, _)| m != module) {
            modules.push((module.to_string(), modules.len()));
        }
    }
    move |n: &str| {
        let (module, leaf) = n.rsplit_once('.').unwrap();
        let k = modules.iter().find(|(m, _)| m == module).unwrap().1;
        format!("net.{k}.{leaf}")
    }
}

#[test]
fn a_renamed_batch_norm_resnet_loads_by_order_with_the_models_range_checks() {
    let spec = resnet_for(18, Dataset::Cifar10, Pool::Avg).unwrap();
    let graph = spec.to_graph();
    let mut p = init_params(&spec, 6);
    p.get_mut("bn1.running_var").unwrap().data[0] = 0.5;
    let rename = numbered(&graph);
    let tracked: Vec<String> = graph
        .params
        .iter()
        .filter_map(|(n, _)| n.strip_suffix(".running_var").map(|m| rename(&format!("{m}.num_batches_tracked"))))
        .collect();
    assert_eq!(rename("bn1.running_var"), "net.1.running_var");
    let path = tmp("resnet.safetensors");
    write_renamed(&path, &p, &rename, &tracked);
    assert_same(&load_graph_safetensors_as(&path, &graph, Match::ByOrder).unwrap(), &p);
    let err = load_graph_safetensors(&path, &graph).unwrap_err().to_string();
    assert!(err.contains("load them by order"), "{err}");
    // A negative running variance is caught by the model's name, whatever the file's.
    p.get_mut("bn1.running_var").unwrap().data[2] = -0.25;
    write_renamed(&path, &p, &rename, &tracked);
    let err = load_graph_safetensors_as(&path, &graph, Match::ByOrder).unwrap_err().to_string();
    assert!(err.contains("net.1.running_var (as bn1.running_var)[2] = -0.25 is outside [0, "), "{err}");
}
