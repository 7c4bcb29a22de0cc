"""Adapters: metricloss losses as differentiable operations of deep-learning frameworks.

Each framework has its own module with one generic ``wrap(loss_fn, **hyperparameters)``; the framework is imported
only when that module is, and a missing one raises an ImportError that names the extra to install. The core
package never imports a framework.
"""
