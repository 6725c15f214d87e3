"""What several test files share, as plain modules (no tests here): tiny networks and inputs, checkpoint helpers,
readers of widgets and their frames, and the harness of the chapter, book and browser tests.

Test files import them as `support.<module>` from any folder: tests/conftest.py has no __init__.py beside it, so
pytest puts tests/ on sys.path before it imports a test file. No test file imports another test file.
"""
