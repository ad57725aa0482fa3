//! The zoo's shapes and parameter counts against the paper's (../shared/reference, section 10).

use cryptgpu_nn::zoo::{alexnet, by_name, lenet, resnet, resnet_for, vgg16, Dataset, Pool};

fn close(got: usize, want: f64) -> bool {
    ((got as f64) - want).abs() / want < 0.01
}

#[test]
fn every_model_checks_and_has_the_papers_size() {
    let cases: Vec<(cryptgpu_nn::spec::ModelSpec, f64)> = vec![
        (lenet(Pool::Avg), 431e3),
        (alexnet(Dataset::Cifar10, Pool::Avg).unwrap(), 3.88e6),
        (alexnet(Dataset::TinyImageNet, Pool::Avg).unwrap(), 6.05e6),
        (alexnet(Dataset::ImageNet, Pool::Avg).unwrap(), 62.4e6),
        (vgg16(Dataset::Cifar10, Pool::Avg).unwrap(), 14.9e6),
        (vgg16(Dataset::TinyImageNet, Pool::Avg).unwrap(), 15.3e6),
        (vgg16(Dataset::ImageNet, Pool::Avg).unwrap(), 54.5e6),
        (resnet(50, Pool::Avg).unwrap(), 25.6e6),
        (resnet(101, Pool::Avg).unwrap(), 44.5e6),
        (resnet(152, Pool::Avg).unwrap(), 60.2e6),
        (resnet(18, Pool::Max).unwrap(), 11.7e6),
        // The small-image ResNet-18 (3x3 stem, 10 classes): 11.17 M parameters.
        (resnet_for(18, Dataset::Cifar10, Pool::Avg).unwrap(), 11.17e6),
    ];
    for (spec, params) in cases {
        spec.check(1).unwrap_or_else(|e| panic!("{}: {e}", spec.name));
        spec.check(4).unwrap_or_else(|e| panic!("{}: {e}", spec.name));
        // Parameter counts exclude batch-norm running statistics, as PyTorch's parameters() does.
        let trainable: usize = spec
            .params()
            .iter()
            .filter(|(n, _)| !n.contains("running_"))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        assert!(close(trainable, params), "{}: {trainable} parameters, paper {params}", spec.name);
    }
    for d in [Dataset::Cifar10, Dataset::TinyImageNet, Dataset::ImageNet] {
        alexnet(d, Pool::Max).unwrap().check(2).unwrap();
        vgg16(d, Pool::Max).unwrap().check(2).unwrap();
    }
    lenet(Pool::Max).check(3).unwrap();
    resnet(50, Pool::Max).unwrap().check(1).unwrap();
}

#[test]
fn names_resolve_and_bad_names_are_errors() {
    assert_eq!(by_name("lenet", Dataset::Mnist).unwrap().name, "lenet");
    assert_eq!(by_name("alexnet-maxpool", Dataset::Cifar10).unwrap().name, "alexnet-maxpool");
    assert!(by_name("resnet50", Dataset::ImageNet).is_ok());
    assert!(by_name("lenet", Dataset::Cifar10).is_err());
    assert_eq!(by_name("resnet18", Dataset::Cifar10).unwrap().classes, 10);
    assert_eq!(by_name("resnet18", Dataset::TinyImageNet).unwrap().input, [3, 64, 64]);
    assert!(by_name("resnet50", Dataset::Mnist).is_err());
    assert!(by_name("resnet7", Dataset::ImageNet).is_err());
    assert!(by_name("transformer", Dataset::ImageNet).is_err());
}
