"""``mgdl_fast.jax``: zero-copy DLPack both ways, the block forward as a ``jax.custom_vjp``
function (eager, jit, grad, vmap) against a plain-JAX block, the engine computing in XLA's own
buffers under jit, and a grade fitted from JAX arrays. Needs JAX (the ``test`` extra installs
its CPU build)."""

from __future__ import annotations

import pytest
import torch

import mgdl_fast as mf

jax = pytest.importorskip("jax", reason="jax is not installed (pip install 'jax[cpu]')")
jnp = pytest.importorskip("jax.numpy")
mj = pytest.importorskip("mgdl_fast.jax")

SHAPE = mf.BlockShape(2, 16, 2, 1)


def jax_block(x, flat, shape: mf.BlockShape = SHAPE):
    """The block in plain JAX on the flat ``BlockParams`` layout (the test's oracle)."""
    h, pos = x, 0
    for k, (fan_in, fan_out) in enumerate(shape.layer_dims):
        w = flat[pos : pos + fan_in * fan_out].reshape(fan_in, fan_out)
        b = flat[pos + fan_in * fan_out : pos + fan_in * fan_out + fan_out]
        pos += fan_in * fan_out + fan_out
        h = h @ w + b
        if k < shape.hidden_layers:
            h = jax.nn.relu(h)
    return h


@pytest.fixture
def inputs():
    flat = mj.from_torch(mf.BlockParams.init(SHAPE, seed=0).flat)
    x = jax.random.uniform(jax.random.PRNGKey(0), (50, 2))
    return flat, x


def test_dlpack_shares_memory_both_ways(inputs):
    _, x = inputs
    t = mj.to_torch(x)
    assert t.data_ptr() == x.unsafe_buffer_pointer() and t.shape == (50, 2)
    tensor = torch.arange(12.0).reshape(3, 4)
    array = mj.from_torch(tensor)
    assert array.unsafe_buffer_pointer() == tensor.data_ptr()
    assert jnp.array_equal(array, jnp.arange(12.0).reshape(3, 4))


def test_block_forward_and_its_gradients_match_plain_jax(inputs):
    flat, x = inputs
    out = mj.block_forward(x, flat, SHAPE)
    assert isinstance(out, jax.Array) and out.shape == (50, 1)
    assert jnp.allclose(out, jax_block(x, flat), rtol=1e-5, atol=1e-6)

    def loss(block):
        return lambda flat, x: jnp.sum(jnp.sin(block(x, flat)))

    ours = loss(lambda x, flat: mj.block_forward(x, flat, SHAPE))
    want = jax.grad(loss(jax_block), argnums=(0, 1))(flat, x)
    for got in (jax.grad(ours, argnums=(0, 1))(flat, x), jax.jit(jax.grad(ours, (0, 1)))(flat, x)):
        for a, b in zip(got, want):
            assert jnp.allclose(a, b, rtol=1e-4, atol=1e-6)
    batch = jnp.stack([x, 0.5 * x])
    vmapped = jax.vmap(lambda x: mj.block_forward(x, flat, SHAPE))(batch)
    assert jnp.allclose(vmapped, jax.vmap(lambda x: jax_block(x, flat))(batch), atol=1e-6)


def test_a_grade_fits_from_jax_arrays_exactly_as_the_engine_does(inputs):
    _, x = inputs
    y = jnp.sin(3 * x[:, :1])
    flat, losses = mj.fit_grade(x, y, SHAPE, epochs=60, lr=1e-2, backend="torch")
    assert isinstance(flat, jax.Array) and flat.shape == (SHAPE.num_params,)
    assert losses.shape == (60,) and float(losses[-1]) < 0.2 * float(losses[0])
    params = mf.BlockParams.init(SHAPE, seed=0)
    engine = mf.bind(SHAPE, device="cpu", rows=50, backend="torch")
    state = engine.optimizer_state("adam", 1e-2, params.flat.numel())
    grad = torch.empty_like(params.flat)
    x_t, y_t = (torch.tensor(jax.device_get(a)) for a in (x, y))
    for _ in range(60):
        engine.step(x_t, y_t, params.flat, grad)
        engine.update(params.flat, grad, state)
    assert torch.equal(mj.to_torch(flat), params.flat)


@pytest.fixture
def engine_pointers(monkeypatch):
    """The data pointers every torch engine's forward and backward got, as (op, name, ptr)."""
    from mgdl_fast.backends.torch import TorchEngine

    seen: list[tuple[str, str, int]] = []
    forward, backward = TorchEngine.forward, TorchEngine.backward

    def spy_forward(self, x, params, out, features_out=None):
        seen.extend([("forward", "x", x.data_ptr()), ("forward", "out", out.data_ptr())])
        forward(self, x, params, out, features_out)

    def spy_backward(self, x, params, grad_out, grad, grad_x=None):
        seen.extend(
            [("backward", "grad", grad.data_ptr()), ("backward", "grad_x", grad_x.data_ptr())]
        )
        backward(self, x, params, grad_out, grad, grad_x)

    monkeypatch.setattr(TorchEngine, "forward", spy_forward)
    monkeypatch.setattr(TorchEngine, "backward", spy_backward)
    return seen


def test_under_jit_the_engine_computes_in_xlas_own_buffers(inputs, engine_pointers):
    flat, x = inputs
    out = jax.jit(lambda x, flat: mj.block_forward(x, flat, SHAPE, "torch"))(x, flat)
    # The input XLA handed the jitted function, and the output it returned: no host copy.
    assert engine_pointers == [
        ("forward", "x", x.unsafe_buffer_pointer()),
        ("forward", "out", out.unsafe_buffer_pointer()),
    ]
    assert jnp.allclose(out, jax_block(x, flat), rtol=1e-5, atol=1e-6)
    engine_pointers.clear()

    def loss(flat, x):
        return jnp.sum(mj.block_forward(x, flat, SHAPE, "torch"))

    grad_flat, grad_x = jax.jit(jax.grad(loss, argnums=(0, 1)))(flat, x)
    assert ("backward", "grad", grad_flat.unsafe_buffer_pointer()) in engine_pointers
    assert ("backward", "grad_x", grad_x.unsafe_buffer_pointer()) in engine_pointers
