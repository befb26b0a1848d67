# Debian packages, built by `cpack -G DEB` in a Release build directory
# (scripts/package-test.sh; README.md, "Install on a Raspberry Pi"):
#   meter-agent_<version>_<arch>.deb   the agent, its unit, sysusers/tmpfiles
#                                      entries, /etc/meter-agent/agent.yaml
#                                      (conffile), presets, broker snippet
#   meter-central_<version>_all.deb    the central service (Python) and its
#                                      unit; not built by a cross build
# Why in systemd/ and not a packaging/ folder: docs/ARCHITECTURE.md.
# The agent's binary, presets and example come from agent/CMakeLists.txt's
# install rules (component "agent", CMAKE_INSTALL_DEFAULT_COMPONENT_NAME).

set(meter_deb ${CMAKE_CURRENT_LIST_DIR}/deb)
# Where Debian 12 packages put units: /lib, not /usr/lib (dpkg's aliasing of
# merged-/usr paths is only safe from trixie on).
set(meter_unit_dir /lib/systemd/system)

# ---- meter-agent ---------------------------------------------------------
install(FILES ${CMAKE_CURRENT_LIST_DIR}/meter-agent.service DESTINATION ${meter_unit_dir}
  COMPONENT agent)
install(FILES ${CMAKE_CURRENT_LIST_DIR}/meter-agent.sysusers DESTINATION lib/sysusers.d
  RENAME meter-agent.conf COMPONENT agent)
install(FILES ${CMAKE_CURRENT_LIST_DIR}/meter-agent.tmpfiles DESTINATION lib/tmpfiles.d
  RENAME meter-agent.conf COMPONENT agent)
# The documented example is the package's configuration: its buffer is already
# /var/lib/meter-agent/buffer.db and its presets come from /usr/share.
install(FILES ${PROJECT_SOURCE_DIR}/config/agent.example.yaml DESTINATION /etc/meter-agent
  RENAME agent.yaml COMPONENT agent)
install(FILES ${PROJECT_SOURCE_DIR}/config/mosquitto/gateway.conf
  DESTINATION share/meter-agent/mosquitto COMPONENT agent)
install(FILES ${PROJECT_SOURCE_DIR}/README.md DESTINATION share/doc/meter-agent COMPONENT agent)

# ---- what Debian asks of every package (lintian, in scripts/package-test.sh) ----
# The copyright file and the changelog (gzip -9n: no name, no time stamp, so the .deb is
# reproducible), and the manual pages, compressed the same way.
set(meter_gz_dir ${CMAKE_BINARY_DIR}/deb-gz)
file(MAKE_DIRECTORY ${meter_gz_dir})
function(meter_gzip source target)
  execute_process(COMMAND gzip -9nc ${source} OUTPUT_FILE ${meter_gz_dir}/${target}
    RESULT_VARIABLE failed)
  if(failed)
    message(FATAL_ERROR "gzip ${source} failed")
  endif()
  # Editing the source re-runs CMake, which compresses it again.
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${source})
endfunction()
meter_gzip(${meter_deb}/changelog changelog.gz)
meter_gzip(${PROJECT_SOURCE_DIR}/docs/man/meter-agent.1 meter-agent.1.gz)
meter_gzip(${PROJECT_SOURCE_DIR}/docs/man/meter-agent.yaml.5 meter-agent.yaml.5.gz)
meter_gzip(${PROJECT_SOURCE_DIR}/docs/man/meter-central.1 meter-central.1.gz)
install(FILES ${meter_deb}/copyright ${meter_gz_dir}/changelog.gz
  DESTINATION share/doc/meter-agent COMPONENT agent)
install(FILES ${meter_gz_dir}/meter-agent.1.gz DESTINATION share/man/man1 COMPONENT agent)
install(FILES ${meter_gz_dir}/meter-agent.yaml.5.gz DESTINATION share/man/man5 COMPONENT agent)

# ---- meter-central (architecture all) --------------------------------------
# Architecture-independent: packaged by native builds only.
set(meter_package_central ON)
if(CMAKE_CROSSCOMPILING)
  set(meter_package_central OFF)
endif()
if(meter_package_central)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/central/ DESTINATION lib/meter-central/central
    COMPONENT central
    PATTERN tests EXCLUDE PATTERN __pycache__ EXCLUDE PATTERN "*.pyc" EXCLUDE
    PATTERN run.sh EXCLUDE PATTERN debian-packages.txt EXCLUDE PATTERN README.md EXCLUDE
    PATTERN ".git*" EXCLUDE
    # The dashboard ships as its build (web/dist, made by npm before packaging), not its sources.
    REGEX "/web/(src|e2e|node_modules|[^/]*\\.(json|mjs|ts|sh|html))$" EXCLUDE)
  install(PROGRAMS ${meter_deb}/meter-central/meter-central DESTINATION bin COMPONENT central)
  install(FILES ${PROJECT_SOURCE_DIR}/central/README.md ${PROJECT_SOURCE_DIR}/docs/SCALING.md
    ${meter_deb}/copyright ${meter_gz_dir}/changelog.gz DESTINATION share/doc/meter-central
    COMPONENT central)
  install(FILES ${meter_gz_dir}/meter-central.1.gz DESTINATION share/man/man1 COMPONENT central)
  # One override, with its reason written in the file.
  install(FILES ${meter_deb}/meter-central/lintian-overrides DESTINATION share/lintian/overrides
    RENAME meter-central COMPONENT central)
  install(FILES ${CMAKE_CURRENT_LIST_DIR}/meter-central.service DESTINATION ${meter_unit_dir}
    COMPONENT central)
  install(FILES ${CMAKE_CURRENT_LIST_DIR}/meter-central.sysusers DESTINATION lib/sysusers.d
    RENAME meter-central.conf COMPONENT central)
  install(FILES ${meter_deb}/meter-central/central.env DESTINATION /etc/meter-central
    PERMISSIONS OWNER_READ OWNER_WRITE COMPONENT central)
endif()

# Its Depends: central/debian-packages.txt without what only the tests need.
file(STRINGS ${PROJECT_SOURCE_DIR}/central/debian-packages.txt meter_central_packages
  REGEX "^[a-z0-9]")
list(FILTER meter_central_packages EXCLUDE REGEX "^(python3-pytest|python3-httpx|postgresql)")
list(JOIN meter_central_packages ", " meter_central_depends)

# ---- CPack -------------------------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME meter-agent)
set(CPACK_PACKAGE_VENDOR "meter-agent")
# The Maintainer field: whoever answers for the packages. The default is the address the
# project's commits are made under; a distributor sets their own.
set(METER_PACKAGE_MAINTAINER
  "meter-agent maintainers <maintainers@users.noreply.r-seed-7b9d517f.example>"
  CACHE STRING "Maintainer of the Debian packages: Name <address>")
set(CPACK_PACKAGE_CONTACT "${METER_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL agent)
if(meter_package_central)
  list(APPEND CPACK_COMPONENTS_ALL central)
endif()
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_COMPRESSION_TYPE xz)

set(CPACK_DEBIAN_AGENT_PACKAGE_NAME meter-agent)
set(CPACK_COMPONENT_AGENT_DESCRIPTION "MQTT edge gateway agent for energy meters
Takes every reading the site's meters publish over MQTT, stores it in a local
crash-safe buffer before acknowledging it, normalizes it exactly (units, UTC,
deltas, flags) and keeps it for the central database.")
if(CMAKE_CROSSCOMPILING)
  # dpkg would name the build machine's architecture.
  if(CMAKE_SYSTEM_PROCESSOR STREQUAL "aarch64")
    set(CPACK_DEBIAN_AGENT_PACKAGE_ARCHITECTURE arm64)
  elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^arm")
    set(CPACK_DEBIAN_AGENT_PACKAGE_ARCHITECTURE armhf)
  endif()
endif()
set(CPACK_DEBIAN_AGENT_PACKAGE_SHLIBDEPS ON)
# adduser: the postinst falls back to it where systemd-sysusers is missing (Debian 12 ships
# systemd-sysusers inside systemd, which a container may lack), so it is a plain dependency.
set(CPACK_DEBIAN_AGENT_PACKAGE_DEPENDS "init-system-helpers (>= 1.54~), adduser, tzdata")
set(CPACK_DEBIAN_AGENT_PACKAGE_RECOMMENDS "mosquitto")
set(CPACK_DEBIAN_AGENT_PACKAGE_CONTROL_EXTRA
  "${meter_deb}/meter-agent/conffiles;${meter_deb}/meter-agent/postinst;${meter_deb}/meter-agent/prerm;${meter_deb}/meter-agent/postrm")

set(CPACK_DEBIAN_CENTRAL_PACKAGE_NAME meter-central)
set(CPACK_COMPONENT_CENTRAL_DESCRIPTION "central ingest API for meter-agent gateways
FastAPI + SQLAlchemy + Alembic on PostgreSQL: takes the gateways' batches
idempotently and serves the measurements. Its migrations run by command
(meter-central migrate), never on install.")
set(CPACK_DEBIAN_CENTRAL_PACKAGE_ARCHITECTURE all)
set(CPACK_DEBIAN_CENTRAL_PACKAGE_SECTION web)
set(CPACK_DEBIAN_CENTRAL_PACKAGE_DEPENDS
  "python3 (>= 3.11), ${meter_central_depends}, postgresql-client, init-system-helpers (>= 1.54~), adduser")
set(CPACK_DEBIAN_CENTRAL_PACKAGE_RECOMMENDS "postgresql")
set(CPACK_DEBIAN_CENTRAL_PACKAGE_CONTROL_EXTRA
  "${meter_deb}/meter-central/conffiles;${meter_deb}/meter-central/postinst;${meter_deb}/meter-central/prerm;${meter_deb}/meter-central/postrm")

include(CPack)
