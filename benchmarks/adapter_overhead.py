"""Overhead of the framework adapters per call: the wrapped loss (value and gradient through the framework)
against the same metricloss call on NumPy arrays, at B = 256, D = 128, float32, batch-hard triplet loss.

    python benchmarks/adapter_overhead.py
"""

import time

import numpy as np

import metricloss as ml

B, D = 256, 128


def best(call, seconds=1.0):
    call()
    times, started = [], time.perf_counter()
    while time.perf_counter() - started < seconds or len(times) < 5:
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, D)).astype(np.float32)
    labels = np.repeat(np.arange(B // 4), 4)
    hyper = {"mining": "hard", "margin": 0.5}
    rows = [("metricloss on NumPy", best(lambda: ml.triplet_loss(x, labels, **hyper)))]

    import torch

    from metricloss.adapters.torch import wrap as torch_wrap

    torch.set_num_threads(2)
    torch_loss = torch_wrap(ml.triplet_loss, **hyper)
    tx, tl = torch.tensor(x, requires_grad=True), torch.tensor(labels)
    rows.append(("PyTorch custom op, forward + backward", best(lambda: torch_loss(tx, tl).backward())))

    import jax

    from metricloss.adapters.jax import wrap as jax_wrap

    jax_loss = jax_wrap(ml.triplet_loss, **hyper)
    jx, jl = jax.numpy.asarray(x), jax.numpy.asarray(labels)
    grad = jax.value_and_grad(jax_loss)
    rows.append(("JAX value_and_grad, eager", best(lambda: jax.block_until_ready(grad(jx, jl)))))
    jitted = jax.jit(grad)
    rows.append(("JAX value_and_grad, jit", best(lambda: jax.block_until_ready(jitted(jx, jl)))))

    import tensorflow as tf

    from metricloss.adapters.tensorflow import wrap as tf_wrap

    tf_loss = tf_wrap(ml.triplet_loss, **hyper)
    fx, fl = tf.constant(x), tf.constant(labels)

    def tf_value_and_grad(embeddings):
        with tf.GradientTape() as tape:
            tape.watch(embeddings)
            value = tf_loss(embeddings, fl)
        return value, tape.gradient(value, embeddings)

    rows.append(("TensorFlow GradientTape, eager", best(lambda: tf_value_and_grad(fx))))
    graph = tf.function(tf_value_and_grad)
    rows.append(("TensorFlow GradientTape, tf.function", best(lambda: graph(fx))))

    base = rows[0][1]
    print(f"| B = {B}, D = {D}, float32, batch-hard | time per call | overhead |\n|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds * 1e3:.2f} ms | {(seconds - base) * 1e3:+.2f} ms |")


if __name__ == "__main__":
    main()
