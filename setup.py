"""Package set-up read from settings.ini (nbdev's standard setup.py), plus the kit's files: `slimlab/lab_data/` ships as
package data, and the chapter notebooks of `nbs/` are copied into the package as `slimlab/chapters/` when it is built."""
from configparser import ConfigParser
from pathlib import Path
import setuptools, shlex, shutil
from setuptools.command.build_py import build_py

config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

expected = 'version description keywords author author_email'.split()
missing = [o for o in expected if o not in cfg]
if missing: raise ValueError(f"settings.ini is missing: {', '.join(missing)}")

licenses = {'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License')}
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable',
            '6 - Mature', '7 - Inactive']
py_versions = '3.10 3.11 3.12 3.13'.split()

requirements = shlex.split(cfg.get('requirements', ''))
extras = {name: shlex.split(cfg.get(f'{name}_requirements', '')) for name in ('lab', 'eval', 'dev')}
extras['dev'] = extras['dev'] + extras['lab'] + [r for r in extras['eval'] if r not in extras['lab']]  # tests run every chapter
lic = licenses[cfg['license']]
min_python = cfg['min_python']
console_scripts = cfg.get('console_scripts', '').split()

class build_py_with_chapters(build_py):
    "build_py that also copies the chapter notebooks (nbs/*.ipynb, not the `_` scratch ones) into the package as chapters/."
    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False): return  # an editable install finds the clone's nbs/ itself
        src, dest = Path(cfg['nbs_path']), Path(self.build_lib)/cfg['lib_path']/'chapters'
        chapters = sorted(p for p in src.glob('*.ipynb') if not p.name.startswith('_'))
        if not chapters: raise FileNotFoundError(f"no chapter notebooks in {src.resolve()}: build from a clone or from the sdist")
        shutil.rmtree(dest, ignore_errors=True); dest.mkdir(parents=True)
        for p in chapters: shutil.copyfile(p, dest/p.name)

setuptools.setup(
    name=cfg['lib_name'],
    license=lic[0],
    classifiers=['Development Status :: ' + statuses[int(cfg['status'])],
                 'Intended Audience :: ' + cfg['audience'].title(),
                 'License :: ' + lic[1],
                 'Natural Language :: ' + cfg['language'].title()]
               + ['Programming Language :: Python :: ' + o for o in py_versions[py_versions.index(min_python):]],
    url=cfg['git_url'],
    packages=setuptools.find_packages(include=['slimlab', 'slimlab.*']),
    include_package_data=False,  # package_data below says exactly what ships (MANIFEST.in only fills the sdist)
    package_data={cfg['lib_name']: ['lab_data/**/*']},
    cmdclass={'build_py': build_py_with_chapters},
    install_requires=requirements,
    extras_require=extras,
    dependency_links=cfg.get('dep_links', '').split(),
    python_requires='>=' + cfg['min_python'],
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    zip_safe=False,
    entry_points={'console_scripts': console_scripts, 'nbdev': [f'{cfg["lib_path"]}={cfg["lib_path"]}._modidx:d']},
    version=cfg['version'],
    description=cfg['description'],
    keywords=cfg['keywords'],
    author=cfg['author'],
    author_email=cfg['author_email'],
)
