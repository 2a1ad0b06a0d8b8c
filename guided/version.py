"""The package version, in a module of its own so that every module can read it without importing the
package (whose ``__init__`` reaches into the others)."""

__version__ = "0.1.0"
